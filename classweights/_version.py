"""The package's version, in a module of its own: modules that write it (the report, the
command line) import it from here, not through the package's ``__init__``."""

__version__ = "0.1.0"
