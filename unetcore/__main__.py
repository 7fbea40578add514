"""`python -m unetcore ...`: the `unetcore` command, for environments without its script on PATH."""
from unetcore.cli import main

main(prog_name="unetcore")
