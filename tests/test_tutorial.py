"""Runs every command of docs/tutorial.md in order, and checks the generated parts of docs/."""
import re
import shlex
import shutil
from pathlib import Path

from click.testing import CliRunner

from unetcore.cli import main
from unetcore.docgen import regenerate

REPO = Path(__file__).resolve().parent.parent


def tutorial_commands():
    text = (REPO / "docs" / "tutorial.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [shlex.split(line) for block in blocks for line in block.splitlines() if line.strip()]


def test_every_tutorial_command_runs(tmp_path, monkeypatch):
    shutil.copytree(REPO / "prototxt", tmp_path / "prototxt")
    monkeypatch.chdir(tmp_path)
    commands = tutorial_commands()
    assert len(commands) >= 10 and all(c[0] == "unetcore" for c in commands)
    for command in commands:
        result = CliRunner().invoke(main, command[1:])
        assert result.exit_code == 0, f"{' '.join(command)}\n{result.output}"
    assert Path("segmentation.tif").exists() and Path("curve.svg").exists()
    assert Path("snapshots/unet-demo_iter_8.caffemodel.h5").exists()


def test_generated_docs_are_up_to_date():
    assert regenerate(check=True) == []
