"""The `unetcore` command line: one module per group of verbs, parsing and printing only."""
from unetcore.cli.main import main

__all__ = ["main"]
