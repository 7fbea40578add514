"""The Python examples in docs/ run as printed: every ```python block of a page, in order,
in one namespace."""
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ["check-your-layer.md"]


@pytest.mark.parametrize("page", PAGES)
def test_python_blocks_run(page, capsys, monkeypatch):
    import unetcore.layer
    import unetcore.layers  # noqa: F401  (register the built-in types before the copy below)
    # the examples register layer types: keep them out of the registry other tests see
    monkeypatch.setattr(unetcore.layer, "LAYER_TYPES", dict(unetcore.layer.LAYER_TYPES))
    monkeypatch.setattr(unetcore.layer, "ENGINES",
                        {k: list(v) for k, v in unetcore.layer.ENGINES.items()})
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), re.S)
    assert blocks, f"{page} has no Python example"
    namespace = {}
    for block in blocks:
        exec(compile(block, f"docs/{page}", "exec"), namespace)
    assert "FAILED" in capsys.readouterr().out      # the wrong backward was reported
