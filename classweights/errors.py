"""The errors a user can cause. The CLI shows each as one line and exits with its code."""

from __future__ import annotations


class ClassWeightsError(Exception):
    """Base of the project's errors; ``exit_code`` is what the command line exits with."""

    exit_code = 3


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
    """A mask cannot be read, or holds a value it may not hold."""


class ReportError(FileError):
    """A report cannot be read, or reports do not agree with each other."""


class LabelFileError(FileError):
    """A colour map, value map or class-name file cannot be read or makes no sense."""


class WeightError(ClassWeightsError):
    """Weights cannot be derived as asked (for instance ``--missing error`` with absent classes)."""


class ClassWeightsWarning(UserWarning):
    """What the library warns about through `warnings.warn`: data that looks mislabelled (a
    sparse label set, JPEG masks) or weights filled in for classes with no pixels.

    Filter them as one category: ``warnings.simplefilter("error", ClassWeightsWarning)``.
    The command line shows the same messages on stderr instead.
    """
