import os
import sys

from hypothesis import settings

sys.path.insert(0, os.path.dirname(__file__))
settings.register_profile("ci", max_examples=25, deadline=None)
settings.register_profile("dev", max_examples=10, deadline=None)
settings.register_profile("deep", max_examples=300, deadline=None)   # HYPOTHESIS_PROFILE=deep
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
