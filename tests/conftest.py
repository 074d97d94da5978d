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


@pytest.fixture(params=["compiled", "pure"])
def png_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on both PNG paths: the compiled kernel, and pure Python (Pillow and numpy).

    The compiled run is skipped where the extension is not built; workers forked by a scan
    inherit the choice.
    """
    from classweights import _native, png

    if request.param == "compiled":
        if _native.KERNEL is None:
            pytest.skip("the C kernel is not built (or CLASSWEIGHTS_PURE is set)")
        monkeypatch.setattr(png, "KERNEL", _native.KERNEL)
    else:
        monkeypatch.setattr(png, "KERNEL", None)
    return request.param


#: Tests that leave threads in this process: a Dask client, s3fs's and fsspec's event loops.
THREADED = ("test_dask.py", "test_s3.py", "test_sources.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests that leave threads last, so that the tests that fork workers run while
    this process has none (forking a threaded process is unsafe); Dask's last of all."""
    items.sort(key=lambda item: (item.path.name in THREADED, item.path.name == "test_dask.py"))
