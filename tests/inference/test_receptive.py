"""The receptive field by interval propagation (unetcore/inference/receptive.py), checked against the
net itself: perturb one input row at a time and see which output rows change."""
import numpy as np
import pytest
from click.testing import CliRunner

from unetcore.cli import main
from unetcore.gradcheck import randomize_params
from unetcore.net import Net
from unetcore.inference.receptive import field_sizes, receptive_field
from unetcore.models.unet import deploy_text


def measured_rows(net, size, positions):
    """{output row: (first, last) input row whose perturbation changes it}."""
    rng = np.random.default_rng(1)
    image = rng.random((1, 1, size, size))
    base = net.forward(data=image)["score"].copy()
    touched = {p: [] for p in positions}
    for row in range(size):
        moved = image.copy()
        moved[0, 0, row, :] += 1.0
        out = net.forward(data=moved)["score"]
        for p in positions:
            if not np.array_equal(out[0, :, p, :], base[0, :, p, :]):
                touched[p].append(row)
    return {p: (min(rows), max(rows)) for p, rows in touched.items()}


@pytest.mark.parametrize("depth,size", [(2, 60), (4, 236)])
def test_intervals_match_what_the_net_depends_on(tmp_path, depth, size):
    model = tmp_path / "net.prototxt"
    model.write_text(deploy_text("net", depth=depth, channels=2, size=size))
    net = Net(str(model), "TEST", dtype=np.float64)
    randomize_params(net, np.random.default_rng(0), scale=0.5)
    positions = list(range(0, net.blobs["score"].shape[-1], 3))
    measured = measured_rows(net, size, positions)
    for p in positions:
        assert receptive_field(net, (p, p))[0] == measured[p], p


def test_the_2015_net_depends_on_188_or_204_pixels():
    net = Net("prototxt/unet-deploy.prototxt", "TEST")
    assert field_sizes(net) == {188: [0, 1, 2, 3], 204: list(range(4, 16))}
    assert receptive_field(net, (0, 0)) == [(0, 187), (0, 187)]
    assert receptive_field(net, (16, 20)) == [(16, 203), (16, 219)]   # 16 px later, the same
    result = CliRunner().invoke(main, ["shapes", "prototxt/unet-deploy.prototxt",
                                       "--receptive-field"])
    assert result.exit_code == 0
    assert "                    4           0 .. 203            204  +5.5" in result.output
