"""The terminal as people meet it: presets, -V, start-up cost, the table, progress, warnings."""

from __future__ import annotations

import subprocess
import sys

import pytest

from classweights.presets import PRESETS
from classweights.report import DIGITS
from classweights.weights import ENET_C
from helpers import MASK_A, MASK_B, run, run_json, save_mask


@pytest.fixture
def tiny(tmp_path):
    save_mask(tmp_path / "m" / "a.png", MASK_A)
    save_mask(tmp_path / "m" / "b.png", MASK_B)
    return tmp_path / "m"


def test_presets_name_shows_the_classes_in_any_case():
    result = run("presets", "CamVid")
    assert result.exit_code == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["0", "Sky"] and lines[11].split() == ["10", "Bicyclist"]
    assert "ignored: 11" in lines
    cityscapes = run("presets", "cityscapes").stdout
    assert "  18  bicycle" in cityscapes and "7:0" in cityscapes and "*_labelIds.png" in cityscapes
    assert run("presets", "nope").exit_code == 2


def test_preset_names_are_case_insensitive(tiny):
    doc = run_json("scan", tiny, "--preset", "VOC", "-q")
    assert doc["num_classes"] == len(PRESETS["voc"].names)


def test_short_version_flag():
    assert run("-V").stdout == run("--version").stdout != ""


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["-V"]])
def test_help_and_version_import_no_numpy_nor_the_scan(args):
    code = (
        "import sys\n"
        "from classweights.cli import cli\n"
        f"try:\n    cli({args!r})\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('numpy', 'PIL', 'rich')"
        " or m in ('classweights.scan', 'classweights.masks', 'classweights.weights')]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_help_shows_the_defaults_of_deferred_options():
    help_text = " ".join(run("scan", "--help").stdout.split())
    assert f"[default: ({ENET_C})" in help_text
    assert f"[default: ({DIGITS})" in help_text
    assert "[default: median]" in help_text and "torch-ce" in help_text
