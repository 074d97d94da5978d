"""The ``classweights`` console script's entry point, outside the package on purpose.

Importing the package takes most of a second (numpy, Pillow), and a Ctrl-C then would print
a KeyboardInterrupt traceback. This module imports nothing heavy: it makes Ctrl-C exit 130
quietly first, then imports the command line, which handles Ctrl-C itself from there on.
"""

import os
import signal


def _interrupted(signum, frame):
    os.write(2, b"interrupted\n")
    os._exit(130)


def main():
    """Run the ``classweights`` command line."""
    signal.signal(signal.SIGINT, _interrupted)
    from classweights.cli import main as run

    run()


if __name__ == "__main__":
    main()
