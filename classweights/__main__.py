"""``python -m classweights`` and the ``classweights`` console script.

Importing the command line takes a good part of a second (numpy, click), and a Ctrl-C then
would print a KeyboardInterrupt traceback. So `main` imports nothing heavy first (the
package's ``__init__`` is lazy): it makes Ctrl-C exit 130 quietly, then imports the command
line, which handles Ctrl-C itself from there on.
"""

import os
import signal


def _interrupted(signum: int, frame: object) -> None:
    os.write(2, b"interrupted\n")
    os._exit(130)


def main() -> None:
    """Run the ``classweights`` command line."""
    signal.signal(signal.SIGINT, _interrupted)
    # The command line does no linear algebra: the thread pool that OpenBLAS starts when
    # numpy is imported would cost about a tenth of a second of CPU in every run, for nothing.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from .cli import main as run

    run()


if __name__ == "__main__":
    main()
