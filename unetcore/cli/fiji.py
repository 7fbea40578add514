"""unetcore fiji-backend: the caffe_unet and caffe commands that the Fiji U-Net plugin runs."""
import click

from unetcore.cli.app import main
from unetcore.cli.options import runtime_option


@main.command(name="fiji-backend")
@click.argument("folder", type=click.Path(file_okay=False))
@runtime_option
def fiji_backend(folder, runtime):
    """Write FOLDER/caffe_unet and FOLDER/caffe: the Fiji U-Net plugin's backend, run by this
    installation (point the plugin's caffe_unet setting at FOLDER/caffe_unet; docs/fiji.md)."""
    from unetcore.fiji.backend import write_scripts
    for path in write_scripts(folder, runtime):
        click.echo(f"wrote {path}")
