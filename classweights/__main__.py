"""``python -m classweights`` and the ``classweights`` console script.

Importing the command line takes a good part of a second (numpy, click), and a Ctrl-C then
would print a KeyboardInterrupt traceback. So `main` imports nothing heavy first (the
package's ``__init__`` is lazy): it makes Ctrl-C exit 130 quietly, then imports the command
line, which handles Ctrl-C itself from there on.
"""

import atexit
import contextlib
import os
import signal
import sys


def _interrupted(signum: int, frame: object) -> None:
    os.write(2, b"interrupted\n")
    os._exit(130)


def main() -> None:
    """Run the ``classweights`` command line and exit with its code."""
    signal.signal(signal.SIGINT, _interrupted)
    _hold_closed_streams()
    # The command line does no linear algebra: the thread pool that OpenBLAS starts when
    # numpy is imported would cost about a tenth of a second of CPU in every run, for nothing.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from .cli import main as run

    try:
        run()
    except SystemExit as done:
        _exit(done.code)
    _exit(0)


def _hold_closed_streams() -> None:
    """Hold a standard stream the caller closed (``2>&-``) with /dev/null.

    Its descriptor is free, and the next file opened (an output's temporary file) would take
    it: what is written to that stream would land in the file. Python leaves such a stream
    None: stderr becomes /dev/null (the exit code still says how the run ended); stdout stays
    None, and a document for it is refused (`report.write_output`).
    """
    for descriptor in (0, 1, 2):
        try:
            os.fstat(descriptor)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: this one
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (for the rest of the process)


def _exit(code: object) -> None:
    """Exit with ``code`` without the interpreter's teardown, which frees every object of
    every module one by one: tens of milliseconds, as long as a scan of a few hundred masks.
    By now the run has closed what it wrote (outputs are written atomically, the workers are
    joined); the standard streams are flushed and the exit handlers run, as at any exit."""
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)  # sys.exit("message"): the message, and status 1
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):  # a closed pipe, or
            stream.flush()  # a stream closed before the run (None): nothing to say
    atexit._run_exitfuncs()
    os._exit(code or 0)


if __name__ == "__main__":
    main()
