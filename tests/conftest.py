import logging
import os
import sys

import pytest
from hypothesis import settings

sys.path.insert(0, os.path.dirname(__file__))                              # cases
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bin"))   # docgen
settings.register_profile("ci", max_examples=25, deadline=None)
settings.register_profile("dev", max_examples=10, deadline=None)
settings.register_profile("deep", max_examples=300, deadline=None)   # HYPOTHESIS_PROFILE=deep
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def auto_engine():
    """Each test starts with engine "auto", whatever a command before it chose."""
    from unetcore import config
    with config.using_engine(config.DEFAULT_ENGINE):
        yield


@pytest.fixture
def logged():
    """The messages the layers log (as the solver's log would carry them)."""
    from unetcore.logs import LOGGER
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    LOGGER.addHandler(handler)
    level = LOGGER.level
    LOGGER.setLevel(logging.INFO)
    yield messages
    LOGGER.removeHandler(handler)
    LOGGER.setLevel(level)
