"""The worker processes: every task's result comes back once, and a failure in a worker is
one error in the parent, never a hang."""

from __future__ import annotations

import os
import resource
import signal
import sys
import time

import pytest

from classweights import ClassWeightsError, LabelSpec, MaskError, scan
from helpers import REPO

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
            r"\(killed by SIGKILL, out of memory\?\); run with workers=1",
        ):
            list(workers.map(die, range(4), 2))
    for pid in pids:  # all reaped: none is left running or a zombie
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def fail_on_zero_else_wait(x: int) -> int:
    if x == 0:
        raise MaskError("m0.png", "cannot read mask: truncated")
    time.sleep(0.2)  # still busy when the error reaches the parent
    return x


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("not this one")


def raise_unpicklable(x: int) -> int:
    raise Unpicklable(x)


def test_a_map_stopped_early_leaves_nothing_for_the_next():
    with SCAN.Workers(3) as workers:
        with pytest.raises(MaskError):
            list(workers.map(fail_on_zero_else_wait, range(6), 3))
        assert sorted(workers.map(square, range(5), 3)) == [0, 1, 4, 9, 16]
        results = workers.map(square, range(10, 20), 3)
        next(results)
        results.close()  # the caller's break
        assert sorted(workers.map(square, range(3), 3)) == [0, 1, 4]


def test_an_error_that_cannot_be_pickled_still_says_what_happened():
    with SCAN.Workers(2) as workers, pytest.raises(RuntimeError, match="cannot send back"):
        list(workers.map(raise_unpicklable, range(4), 2))


def test_descriptors_above_1024_are_no_problem():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("this machine allows fewer than 1200 open files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with SCAN.Workers(2) as workers:
            assert max(c.results.fileno() for c in workers._children) > 1024
            assert sorted(workers.map(square, range(8), 2)) == [x * x for x in range(8)]
    finally:
        for descriptor in held:
            os.close(descriptor)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_masks_are_classified_in_batches_of_bounded_size(monkeypatch):
    spec = LabelSpec(ignore_index=(255,))
    whole = scan([REPO / "sample_masks"], spec, workers=1).counts
    monkeypatch.setattr(SCAN, "BATCH_VALUES", 3)  # a batch every mask or two
    assert scan([REPO / "sample_masks"], spec, workers=1).counts == whole


@pytest.mark.parametrize(("count", "parallel"), [(0, 2), (5, 1), (64, 2), (2000, 2), (20000, 8)])
def test_shares_cover_every_mask_once_and_shrink(count, parallel):
    shares = list(SCAN._shares(count, parallel))
    covered = [i for share in shares for i in range(count)[share]]
    assert covered == list(range(count))
    sizes = [len(range(count)[share]) for share in shares]
    assert sizes == sorted(sizes, reverse=True)  # the last tasks are the smallest
    assert all(size <= SCAN.MAX_CHUNK for size in sizes)
    assert all(size >= SCAN.MIN_CHUNK for size in sizes[:-1])
