"""The `unetcore` command group: every error the user can cause is an UnetcoreError, printed
as one line ("unetcore: error: ...") with exit status 1, never as a traceback; a bug is one
line too, with exit status 2 (UNETCORE_DEBUG=1 shows its traceback)."""
import sys

import click

from unetcore import config
from unetcore.errors import UnetcoreError


class OneLineErrors(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UnetcoreError as err:
            click.echo(f"unetcore: error: {err}", err=True)
            sys.exit(1)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as err:                 # a bug: still one line, unless debugging
            if config.debug():
                raise
            click.echo(f"unetcore: internal error: {type(err).__name__}: {err} (a bug in "
                       "unetcore: please report it with the command; UNETCORE_DEBUG=1 shows "
                       "the traceback)", err=True)
            sys.exit(2)


@click.group(cls=OneLineErrors)
@click.version_option(package_name="unetcore")
def main():
    """unetcore: the original U-Net, Caffe-style, on NumPy and CuPy."""


def progress_bar(total=None, unit="tile", single=False):
    """A tqdm bar on stderr when it is a terminal (none when `single`: one step is no
    progress to show); its update(n) is the progress callback the library functions take."""
    from tqdm import tqdm
    return tqdm(total=total, unit=unit, disable=single or not sys.stderr.isatty())
