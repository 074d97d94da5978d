"""Every public name of the package is documented, numpydoc style (README, "From Python"):
a function names each of its parameters under "Parameters" and says what it returns under
"Returns"; a class names the arguments it takes (under "Parameters" or "Attributes"); a
constant has a ``#:`` comment where it is defined."""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

import classweights
from classweights import _HOMES


def section(doc: str, title: str) -> list[str]:
    """Return the names a numpydoc section lists (``a, b : type`` gives a and b; ``**kw``)."""
    match = re.search(rf"^{title}\n-+\n(.*?)(?=^\S[^\n]*\n-+\n|\Z)", doc, re.M | re.S)
    if not match:
        return []
    names = []
    for line in match.group(1).splitlines():
        if line and not line[0].isspace():
            names += [n.strip().lstrip("*") for n in line.split(" : ")[0].split(",")]
    return names


def parameters(obj) -> list[str]:
    """The parameters a caller passes (not self, nor a builtin exception's *args)."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    return [
        name
        for name, p in signature.parameters.items()
        if name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL,)
        and not (
            inspect.isclass(obj) and issubclass(obj, BaseException) and p.kind == p.VAR_KEYWORD
        )
    ]  # fmt: skip


PUBLIC = sorted(set(classweights.__all__) - {"__version__"})


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_is_documented(name):
    obj = getattr(classweights, name)
    if inspect.ismodule(obj):  # classweights.scan, callable as its scan function
        obj = obj.scan
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        # A constant: a "#:" comment on the lines just above its definition.
        source = inspect.getsource(importlib.import_module(f"classweights.{_HOMES[name]}"))
        assert re.search(rf"^#:.*\n(#.*\n)*{name}\b", source, re.M), name
        return
    doc = inspect.getdoc(obj)
    assert doc and obj.__doc__, f"{name} has no docstring"
    wanted = parameters(obj)
    listed = section(doc, "Parameters") + section(doc, "Attributes")
    missing = [p for p in wanted if p not in listed]
    assert not missing, f"{name}'s docstring does not list {missing}"
    if inspect.isfunction(obj):
        returns = inspect.signature(obj).return_annotation
        if returns not in ("None", None, inspect.Signature.empty):
            assert section(doc, "Returns") or "Returns\n-------" in doc, name


def test_the_section_parser_reads_numpydoc():
    doc = (
        "Intro.\n\nParameters\n----------\na, b : int\n    Text.\n**kw\n    More.\n\n"
        "Returns\n-------\nint\n"
    )
    assert section(doc, "Parameters") == ["a", "b", "kw"]
    assert section(doc, "Returns") == ["int"]
    assert section(doc, "Raises") == []


@pytest.mark.parametrize("name", PUBLIC)
def test_the_examples_in_docstrings_run(name, monkeypatch):
    import doctest

    from helpers import REPO

    monkeypatch.chdir(REPO)  # the examples scan sample_masks/

    obj = getattr(classweights, name)
    if not (inspect.isfunction(obj) or inspect.isclass(obj)) or ">>>" not in (obj.__doc__ or ""):
        return
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(obj, name, globs={name: obj, "classweights": classweights}):
        runner.run(test)
    assert runner.failures == 0 and runner.tries > 0, name
