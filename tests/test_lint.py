"""The code passes the linter it is written to: ruff, with the rules of pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing_to_say():
    pytest.importorskip("ruff", reason="ruff is in the test extras: pip install '.[test]'")
    command = [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise"]
    found = subprocess.run(
        [*command, "classweights", "tests", "bench"], cwd=REPO, capture_output=True, text=True
    )
    assert found.returncode == 0, found.stdout + found.stderr
    assert found.stdout.strip() == "All checks passed!"
