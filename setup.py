"""The compiled PNG kernel, built where a C compiler is found; the rest is in pyproject.toml.

``optional=True``: where the extension cannot be built (no compiler, no Python headers), the
install still succeeds and classweights counts PNGs with its pure-Python path instead.
"""

import os

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "classweights._kernel",
            sources=["classweights/_kernel.c"],
            # -O3 lets gcc and clang vectorise the Up and None rows; MSVC's default is /O2.
            extra_compile_args=["-O3"] if os.name == "posix" else [],
            optional=True,
        )
    ]
)
