"""The README cannot rot: every shell example in it runs, and shows what it prints."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, save_mask

README = (REPO / "README.md").read_text()
CONSOLE_BLOCK = re.compile(r"```console\n(.*?)```", re.S)


def examples(text: str) -> list[tuple[str, list[str]]]:
    """Return ``(command, expected stdout lines)`` for every ``$ `` line of the console blocks."""
    found: list[tuple[str, list[str]]] = []
    for block in CONSOLE_BLOCK.findall(text):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            else:
                found[-1][1].append(line)
    return found


def quick_start() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [command for command, _ in examples(section)]


def test_quick_start_is_two_commands_and_ci_runs_them_verbatim():
    commands = quick_start()
    assert len(commands) == 2
    assert commands[0].startswith("pip install . && classweights scan sample_masks/")
    assert commands[1].endswith("&& pytest")
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci


#: Stand-ins for the datasets the README's examples name, laid out like the real ones.
STAND_INS = {
    "cityscapes/gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png": [[7, 8], [26, 0]],
    "cityscapes/gtFine/train/aachen/aachen_000000_000019_gtFine_color.png": [[1, 2], [3, 4]],
    "VOCdevkit/VOC2012/SegmentationClass/2007_000032.png": [[0, 1], [15, 255]],
    "ADEChallengeData2016/annotations/training/ADE_train_00000001.png": [[0, 1], [13, 150]],
    "CamVid/trainannot/0001TP_006690.png": [[0, 3], [10, 11]],
    "membranes/0.png": [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [255, 255, 255, 255]],
    "DRIVE/training/1st_manual/21_manual1.gif": [[0, 255], [255, 0]],
    "DRIVE/training/mask/21_training_mask.gif": [[0, 255], [255, 255]],
    "DRIVE/training/images/21_training.tif": [[10, 20], [30, 40]],
    # One binary mask per class and scan (classweights multilabel --class-folders).
    "lesions/tumour/case1.png": [[0, 1], [1, 1]],
    "lesions/tumour/case2.png": [[0, 0], [0, 1]],
    "lesions/edema/case1.png": [[1, 1], [0, 0]],
    "lesions/edema/case2.png": [[1, 0], [0, 0]],
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A scratch directory with sample_masks/ and the stand-ins; the examples run there in order."""
    work = tmp_path_factory.mktemp("readme")
    shutil.copytree(REPO / "sample_masks", work / "sample_masks")
    for name, ids in STAND_INS.items():
        save_mask(work / name, ids, "P")
    return work


@pytest.mark.parametrize(("command", "expected"), examples(README), ids=lambda v: str(v)[:60])
def test_shell_example(workdir, command, expected):
    if command.startswith("python bench/run.py"):
        pytest.skip("the benchmark takes minutes; run it by hand")
    if command.startswith("pip install"):
        command = command.split("&& ", 1)[1]  # installing is CI's part (see above)
        if command == "pytest":
            pytest.skip("the test suite itself")
    if "jq " in command and shutil.which("jq") is None:
        pytest.skip("jq is not installed")
    code = re.search(r"# exits (\d+)$", command)
    # The examples call `classweights`; run it as this interpreter's module, installed or not.
    prelude = f'classweights() {{ {shlex.quote(sys.executable)} -m classweights "$@"; }}\n'
    done = subprocess.run(
        ["bash", "-c", prelude + command],
        cwd=workdir,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert done.returncode == (int(code.group(1)) if code else 0), done.stderr
    if expected:
        assert done.stdout.splitlines() == expected
    assert "Traceback" not in done.stderr
    if code and int(code.group(1)) >= 2:  # an error: one line on stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_report_example_is_what_the_sample_masks_give(workdir):
    example = re.search(r"```json\n(.*?)```", README, re.S).group(1)
    command = ["scan", "sample_masks/", "--ignore-index", "255", "-q"]
    done = subprocess.run(
        [sys.executable, "-m", "classweights", *command],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == example
