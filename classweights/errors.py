"""The errors a user can cause. The CLI shows each as one line and exits with its code."""

from __future__ import annotations


class ClassWeightsError(Exception):
    """Base of the project's errors; ``exit_code`` is what the command line exits with."""

    exit_code = 3

    def command_line(self) -> str:
        """Return the message as the command line shows it (naming flags, not parameters)."""
        return str(self)


class InputError(ClassWeightsError):
    """Something about the input as a whole is wrong: no masks found, no pixels counted."""


class FileError(ClassWeightsError):
    """A file the user named cannot be read or says something it may not.

    ``path`` and ``message`` are kept apart (and passed to ``Exception``) so the error
    survives the trip back from a worker process.
    """

    def __init__(self, path: object, message: str) -> None:
        super().__init__(str(path), message)
        self.path = str(path)
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class MaskError(FileError):
    """A mask cannot be read, or holds a value it may not hold.

    Parameters
    ----------
    path : str or os.PathLike
        The mask (``error.path``).
    message : str
        What is wrong with it, naming the value (``error.message``).
    """


class ReportError(FileError):
    """A report cannot be read, or reports do not agree with each other.

    Parameters
    ----------
    path : str or os.PathLike
        The report (``error.path``).
    message : str
        What is wrong with it (``error.message``).
    """


class LabelFileError(FileError):
    """A colour map, value map or class-name file cannot be read or makes no sense."""


class WeightError(ClassWeightsError):
    """Weights cannot be derived as asked (for instance ``--missing error`` with absent classes)."""


class ConventionError(InputError):
    """The class count was inferred from ids that look like a void or binary convention.

    ``ways`` are the ways out, each as ``(library parameter, command-line flag)``: the message
    names the parameters, `command_line` the flags.
    """

    def __init__(self, hint: str, ways: tuple[tuple[str, str], ...]) -> None:
        super().__init__(hint, ways)
        self.hint = hint
        self.ways = ways

    def __str__(self) -> str:
        return self._text(0)

    def command_line(self) -> str:
        return self._text(1)

    def _text(self, which: int) -> str:
        return f"{self.hint}; pass " + ", or ".join(way[which] for way in self.ways)


# Escapes for the C0 and C1 control characters and DEL; \n, \r and \t as people write them.
_CONTROL = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))},
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}


def plural(count: int, word: str, words: str | None = None) -> str:
    """Return ``1 file``, ``2 files``, ``1,234 files`` (``words``: the plural, if not word+s)."""
    return f"{count:,} " + (word if count == 1 else words or word + "s")


def one_line(text: str) -> str:
    """Return ``text`` safe to print as one line: control characters (a newline in a file name)
    escaped, and the bytes of a file name that is not UTF-8 (surrogate escapes) as ``\\xff``."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace").translate(_CONTROL)


class ClassWeightsWarning(UserWarning):
    """What the library warns about through `warnings.warn`: data that looks mislabelled (a
    sparse label set, JPEG masks) or weights filled in for classes with no pixels.

    Filter them as one category: ``warnings.simplefilter("error", ClassWeightsWarning)``.
    The command line shows the same messages on stderr instead.
    """
