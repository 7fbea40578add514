"""Runs every command of docs/tutorial.md in order, and checks the generated parts of docs/."""
import re
import shlex
import shutil
from pathlib import Path

from click.testing import CliRunner

from docgen import regenerate, texts_agree          # bin/docgen.py (tests/conftest.py)
from cases import REPO
from unetcore.cli import main



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


def test_the_docs_check_accepts_rounding_and_nothing_else():
    """A printed float may move by one unit of its last digit; a rounding-error figure by up
    to 2x; an integer or any other text not at all."""
    assert texts_agree("pixel error 0.0347 at 0.5", "pixel error 0.0348 at 0.5")
    assert not texts_agree("pixel error 0.0347 at 0.5", "pixel error 0.0349 at 0.5")
    assert not texts_agree("120 parameters", "121 parameters")
    assert not texts_agree("1.9e-05", "2.4e-05")
    assert texts_agree("1.9e-05", "2.4e-05", factor=2.0)
    assert not texts_agree("1.9e-05", "4.0e-05", factor=2.0)
    assert not texts_agree("1.9e-05", "-1.9e-05", factor=2.0)
    assert not texts_agree("F(4, 3) error 1.9e-05", "F(6, 3) error 1.9e-05", factor=2.0)
    assert not texts_agree("max 1.9e-05", "median 1.9e-05")
