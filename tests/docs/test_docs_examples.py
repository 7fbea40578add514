"""The Python examples in docs/ run as printed: every ```python block of a page, in order,
in one namespace."""
import re

import pytest
from cases import REPO, write_plugin_modeldef

DOCS = REPO / "docs"
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


def test_the_model_file_api_in_fiji_md_runs(tmp_path, capsys):
    """docs/fiji.md's Python example, on a model file in the plugin's layout with weights of
    its layout: MODEL, WEIGHTS and JOB are the names the page leaves to the reader."""
    import numpy as np

    from unetcore.gradcheck import randomize_params
    from unetcore.fiji.model import load
    model = write_plugin_modeldef(tmp_path / "cell.modeldef.h5")
    net = load(model).test_net(input_tile=(44, 44))
    randomize_params(net, np.random.default_rng(1))
    net.save(tmp_path / "cell.caffemodel.h5")
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "fiji.md").read_text(), re.S)
    assert blocks, "fiji.md has no Python example"
    namespace = {"MODEL": str(model), "WEIGHTS": str(tmp_path / "cell.caffemodel.h5"),
                 "JOB": str(tmp_path / "tuned" / "cells")}
    for block in blocks:
        exec(compile(block, "docs/fiji.md", "exec"), namespace)
    assert namespace["mask"].shape == (40, 50)
    np.testing.assert_allclose(namespace["probabilities"].sum(axis=0), 1, rtol=1e-5)
    assert (tmp_path / "tuned" / "cells_iter_2.caffemodel.h5").exists()
    assert namespace["tuned"].ident == "test-cell-net-cells"
    out = capsys.readouterr().out
    assert "['d0a'] ['score']" in out and "cells_iter_2.caffemodel.h5" in out
