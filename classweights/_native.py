"""Which PNG path is active: the compiled kernel (``classweights._kernel``) or pure Python.

The kernel is built by ``pip install`` where a C compiler is found, and skipped where it is
not. Setting ``CLASSWEIGHTS_PURE=1`` before the import forces the pure-Python path, which
counts the same (to compare, or to rule the kernel out). This module imports nothing heavy:
``classweights --version`` reads it.
"""

from __future__ import annotations

import os
from types import ModuleType

#: The environment variable that forces the pure-Python path when set to anything but 0.
PURE_ENV = "CLASSWEIGHTS_PURE"


def load_kernel() -> ModuleType | None:
    """Return the compiled kernel module, or None where it is not built or is switched off."""
    if os.environ.get(PURE_ENV, "0") not in ("", "0"):
        return None
    try:
        from . import _kernel
    except ImportError:
        return None
    return _kernel


KERNEL = load_kernel()


def description() -> str:
    """Return the line ``classweights --version`` prints about the PNG path."""
    if KERNEL is not None:
        return "PNG kernel: compiled"
    if os.environ.get(PURE_ENV, "0") not in ("", "0"):
        return f"PNG kernel: pure Python ({PURE_ENV} is set)"
    return "PNG kernel: pure Python (the C extension was not built)"
