"""``python -m classweights``: the same command line as the ``classweights`` script."""

from .cli import main

main()
