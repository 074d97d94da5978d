"""A module that can be called as its function of the same name (``classweights.scan(...)``).

The package exports the scan driver *module* as ``classweights.scan``, so that
``import classweights.scan as s``, ``s.Workers`` and ``mock.patch("classweights.scan.x")``
reach it; a plain ``from .scan import scan`` in ``__init__`` would bind the function over the
module's name and hide it. Calling the module calls its function, so both uses work.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class CallableModule(types.ModuleType):
    """A module whose call is its function of the same name."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__name__.rpartition(".")[2])(*args, **kwargs)


def make_callable(name: str) -> None:
    """Make the module ``name`` callable (`CallableModule`); called at the end of the module."""
    sys.modules[name].__class__ = CallableModule
