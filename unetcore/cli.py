"""The `unetcore` command line (Caffe's tool verbs, and the U-Net's own).

Every error the user can cause is an UnetcoreError; it is printed as one line
("unetcore: error: ...") with exit status 1, never as a traceback.
"""
import sys

import click
import numpy as np

from .errors import UnetcoreError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UnetcoreError as err:
            click.echo(f"unetcore: error: {err}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.version_option(package_name="unetcore")
def main():
    """unetcore: the original U-Net, Caffe-style, on NumPy and CuPy."""


def _phase(value):
    return value.upper()


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--size", type=int, help="Square input edge length (default: the prototxt's).")
@click.option("--phase", type=click.Choice(["train", "test"], case_sensitive=False),
              default="test", show_default=True)
def shapes(model, size, phase):
    """Print every layer's output blob shapes (a shape walk-through of the net)."""
    from .net import Net
    net = Net(model, _phase(phase))
    if size is not None:
        name = net.image_input
        if name is None:
            raise UnetcoreError(f"{model}: --size needs a net with a 4-d input blob")
        blob = net.blobs[name]
        blob.reshape(blob.shape[:-2] + (size, size))
        net.reshape()
        net.check_input_size()
    click.echo(f"{'layer':<24}{'type':<18}{'top':<14}shape")
    for layer, spec, top in zip(net.layers, net.specs, net.top_vecs):
        for name, blob in zip(spec.tops, top):
            click.echo(f"{layer.name:<24}{layer.type:<18}{name:<14}{'x'.join(map(str, blob.shape))}")
    params = sum(b.count for b in net.learnable_params)
    click.echo(f"{len(net.layers)} layers, {params:,} learnable parameters")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--phase", type=click.Choice(["train", "test"], case_sensitive=False),
              default="train", show_default=True)
@click.option("--max-checks", type=int, default=50, show_default=True,
              help="Elements checked per blob (sampled); 0 checks every element.")
@click.option("--step", type=float, default=1e-6, show_default=True)
@click.option("--threshold", type=float, default=1e-6, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def gradcheck(model, phase, max_checks, step, threshold, seed):
    """Check a net's backward against central differences in float64."""
    from .gradcheck import check_net, randomize_params, random_inputs
    from .net import Net, load_net_param
    param = load_net_param(model)
    param.set("force_backward", True)
    net = Net(param, _phase(phase), dtype=np.float64, seed=seed)
    rng = np.random.default_rng(seed)
    randomize_params(net, rng)
    random_inputs(net, rng)
    results = check_net(net, step, threshold, max_checks or None, seed)
    for r in results:
        click.echo(r.line())
    failed = [r for r in results if not r.passed]
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)
