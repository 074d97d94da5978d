"""The worker processes: every task's result comes back once, and a failure in a worker is
one error in the parent, never a hang. Each test runs with workers forked (Linux's default)
and spawned (the start method of Windows and macOS)."""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import sys
import threading
import time

import pytest

from classweights import ClassWeightsError, LabelSpec, MaskError, scan
from helpers import REPO, save_mask

SCAN = sys.modules["classweights.scan"]


@pytest.fixture(params=["fork", "spawn"])
def start_method(request, monkeypatch):
    if request.param == "fork" and not sys.platform.startswith("linux"):
        pytest.skip("fork is the Linux default only")
    if request.param == "fork" and threading.active_count() > 1:
        pytest.skip("another test left threads running: forking now is unsafe")
    monkeypatch.setattr(SCAN, "START_METHOD", request.param)
    return request.param


def square(x: int) -> int:
    return x * x


def fail_on_seven(x: int) -> int:
    if x == 7:
        raise MaskError(f"m{x}.png", "cannot read mask: truncated")
    return x


def die(x: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return x


def run(function, tasks, executor, in_flight=4, ordered=False):
    return list(SCAN.run_tasks(function, tasks, executor, in_flight=in_flight, ordered=ordered))


@pytest.mark.parametrize("in_flight", [1, 2, 5])
def test_every_result_comes_back_once(start_method, in_flight):
    with SCAN.local_executor(3) as pool:
        assert sorted(run(square, range(50), pool, in_flight)) == [x * x for x in range(50)]
        assert run(square, range(50), pool, in_flight, ordered=True) == [x * x for x in range(50)]
        assert sorted(run(square, range(2), pool, in_flight)) == [0, 1]  # fewer than workers
        assert run(square, [], pool, in_flight) == []


def test_a_workers_error_is_raised_in_the_parent_as_it_was(start_method):
    with SCAN.local_executor(2) as pool, pytest.raises(MaskError) as caught:
        run(fail_on_seven, range(20), pool)
    assert (caught.value.path, caught.value.message) == ("m7.png", "cannot read mask: truncated")


def test_a_worker_that_dies_is_one_error_and_the_others_are_ended(start_method):
    with (
        pytest.raises(
            ClassWeightsError,
            match=r"^a worker process ended unexpectedly "
            r"\(killed by SIGKILL, out of memory\?\); run with workers=1",
        ),
        SCAN.local_executor(2) as pool,
    ):
        processes = list(pool._processes.values())
        run(die, range(4), pool)
    for process in processes:  # all ended and reaped: none is left running or a zombie
        assert process.exitcode is not None


def test_a_pool_broken_before_a_task_is_submitted_is_the_same_one_error(start_method):
    # A busy machine may let a worker die before the next task is submitted: then the
    # pool's submit raises, and that is the same one line.
    with SCAN.local_executor(2) as pool:
        with pytest.raises(cf.BrokenExecutor):
            pool.submit(die, 0).result()
        with pytest.raises(
            ClassWeightsError,
            match=r"^a worker process ended unexpectedly \(killed by SIGKILL, out of memory\?\)",
        ):
            run(square, range(3), pool)


def test_a_dying_worker_ends_a_scan_with_one_line(tmp_path, start_method, monkeypatch):
    from helpers import assert_one_line_error
    from helpers import run as run_cli

    for i in range(SCAN.POOL_MIN_FILES + 10):
        save_mask(tmp_path / f"m{i:03d}.png", [[0, 1]], "P")
    monkeypatch.setattr(SCAN, "count_task", die)
    result = run_cli("scan", tmp_path, "--workers", "2")
    assert_one_line_error(result, 3, "a worker process ended unexpectedly (killed by SIGKILL")


def fail_on_zero_else_wait(x: int) -> int:
    if x == 0:
        raise MaskError("m0.png", "cannot read mask: truncated")
    time.sleep(0.2)  # still busy when the error reaches the parent
    return x


def test_a_map_stopped_early_leaves_nothing_for_the_next(start_method):
    with SCAN.local_executor(3) as pool:
        with pytest.raises(MaskError):
            run(fail_on_zero_else_wait, range(6), pool)
        assert sorted(run(square, range(5), pool)) == [0, 1, 4, 9, 16]
        results = SCAN.run_tasks(square, range(10, 20), pool, in_flight=3)
        next(results)
        results.close()  # the caller's break
        assert sorted(run(square, range(3), pool)) == [0, 1, 4]


def test_in_flight_tasks_are_bounded():
    submitted = []

    class Counting(SCAN.InlineExecutor):
        def submit(self, fn, /, *args, **kwargs):
            submitted.append(args[0])
            return super().submit(fn, *args, **kwargs)

    results = SCAN.run_tasks(square, iter(range(100)), Counting(), in_flight=3)
    assert next(results) == 0
    assert len(submitted) <= 3  # the rest of the stream is not read ahead


def test_a_thread_pool_gives_the_same_counts(tiny):
    spec = LabelSpec(ignore_index=(255,))
    with cf.ThreadPoolExecutor(2) as threads:
        assert scan([tiny], spec, executor=threads).counts == scan([tiny], spec).counts


def test_an_executor_that_is_not_one_is_named(tiny):
    message = r"executor must be a concurrent\.futures\.Executor, not int"
    with pytest.raises(TypeError, match=message):
        scan([tiny], executor=4)


def test_no_fork_while_another_thread_runs():
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        assert SCAN._start_context().get_start_method() == "fork"
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert SCAN._start_context().get_start_method() in ("forkserver", "spawn")
    finally:
        stop.set()
        other.join()


def test_masks_are_classified_in_batches_of_bounded_size(monkeypatch):
    spec = LabelSpec(ignore_index=(255,))
    whole = scan([REPO / "sample_masks"], spec, workers=1).counts
    monkeypatch.setattr(SCAN, "BATCH_VALUES", 3)  # a batch every mask or two
    assert scan([REPO / "sample_masks"], spec, workers=1).counts == whole


@pytest.mark.parametrize(("count", "parallel"), [(0, 2), (5, 1), (64, 2), (2000, 2), (20000, 8)])
def test_tasks_cover_every_mask_once_in_order_from_one_mask_up(count, parallel):
    tasks = list(SCAN._tasks(iter(range(count)), parallel))
    assert [i for task in tasks for i in task] == list(range(count))
    sizes = [len(task) for task in tasks]
    assert all(1 <= size <= SCAN.MAX_CHUNK for size in sizes)
    if count >= 64:
        # Untimed, sizes double from one mask, a step every `parallel` tasks ...
        assert sizes[: 3 * parallel] == [1] * parallel + [2] * parallel + [4] * parallel
        assert max(sizes) == SCAN.MAX_CHUNK or count < 4 * parallel * SCAN.MAX_CHUNK
        # ... and shrink as the work runs out: the last tasks are the smallest.
        top = sizes.index(max(sizes))
        assert sizes[top:] == sorted(sizes[top:], reverse=True) and sizes[-1] == 1


def test_timed_tasks_take_about_task_seconds():
    pace = SCAN.Pace()
    pace.add(seconds=2.0, files=20)  # 0.1 s a mask: a large mask
    sizes = [len(task) for task in SCAN._tasks(iter(range(40)), 2, pace)]
    assert sum(sizes) == 40 and max(sizes) == int(SCAN.TASK_SECONDS / 0.1) == 2
    pace.add(seconds=0.0, files=100_000)  # now a mask takes 20 µs: the largest tasks
    sizes = [len(task) for task in SCAN._tasks(iter(range(5000)), 2, pace)]
    assert max(sizes) == SCAN.MAX_CHUNK


def test_the_first_tasks_start_after_a_few_masks_are_listed():
    listed = []

    def listing():
        for number in range(5000):
            listed.append(number)
            yield number

    tasks = SCAN._tasks(listing(), 2)
    assert next(tasks) == (0,)
    assert len(listed) == 4  # enough for two tasks a worker: not the look-ahead of 1,024


def test_progress_moves_a_file_at_a_time_when_masks_are_slow(tmp_path, monkeypatch):
    # Masks that each take longer than a task should: every task is one mask, so progress
    # is told of each file done, not of a jump of many.
    for number in range(8):
        save_mask(tmp_path / f"{number}.png", [[number % 3] * 4] * 4)
    monkeypatch.setattr(SCAN, "TASK_SECONDS", 0.0)
    seen = []
    scan([tmp_path], workers=1, progress=lambda done, total: seen.append(done))
    # The tasks in flight before the first is timed are 1 and 2 masks; then one at a time.
    assert sorted(set(seen)) == [1, *range(3, 9)]
