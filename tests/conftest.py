"""Fixtures shared by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import MASK_A, MASK_B, save_mask


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A directory with MASK_A and MASK_B as palette PNGs."""
    root = tmp_path / "tiny"
    save_mask(root / "a.png", MASK_A, "P")
    save_mask(root / "b.png", MASK_B, "P")
    return root


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the Dask tests last: a Dask client leaves threads in this process, and the tests
    that fork workers must run while it has none (forking a threaded process is unsafe)."""
    items.sort(key=lambda item: item.path.name == "test_dask.py")
