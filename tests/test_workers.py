"""The worker processes: every task's result comes back once, and a failure in a worker is
one error in the parent, never a hang."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from classweights import ClassWeightsError, MaskError

SCAN = sys.modules["classweights.scan"]


def square(x: int) -> int:
    return x * x


def fail_on_seven(x: int) -> int:
    if x == 7:
        raise MaskError(f"m{x}.png", "cannot read mask: truncated")
    return x


def die(x: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return x


@pytest.mark.parametrize("parallel", [1, 2, 3])
def test_every_result_comes_back_once(parallel):
    with SCAN.Workers(3) as workers:
        assert sorted(workers.map(square, range(50), parallel)) == [x * x for x in range(50)]
        assert sorted(workers.map(square, range(2), parallel)) == [0, 1]  # fewer tasks than workers
        assert list(workers.map(square, [], parallel)) == []


def test_a_workers_error_is_raised_in_the_parent_as_it_was():
    with SCAN.Workers(2) as workers, pytest.raises(MaskError) as caught:
        list(workers.map(fail_on_seven, range(20), 2))
    assert (caught.value.path, caught.value.message) == ("m7.png", "cannot read mask: truncated")


@pytest.mark.skipif(not SCAN.FORK, reason="multiprocessing's Pool serves other platforms")
def test_a_worker_that_dies_is_one_error_and_the_others_are_ended():
    with SCAN.Workers(2) as workers:
        pids = [child.pid for child in workers._children]
        with pytest.raises(
            ClassWeightsError,
            match=r"worker process ended unexpectedly "
            r"\(killed by SIGKILL, out of memory\?\); run with --workers 1",
        ):
            list(workers.map(die, range(4), 2))
    for pid in pids:  # all reaped: none is left running or a zombie
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
