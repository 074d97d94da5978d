"""Dask: a scan on a Dask cluster gives the document a local scan gives, byte for byte."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from classweights import ClassWeightsError, LabelSpec, scan
from helpers import assert_one_line_error, run, save_mask

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    """One local cluster for the module: 2 worker processes on loopback, no dashboard; a task
    whose worker dies is not retried on another (a test kills one)."""
    import dask

    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def masks(tmp_path_factory):
    """300 masks: more than one task of each size."""
    root = tmp_path_factory.mktemp("dask") / "masks"
    rng = np.random.default_rng(8)
    for i in range(300):
        ids = rng.integers(0, 6, size=(7, 9))
        ids[0] = 255
        save_mask(root / f"{i % 4}" / f"m{i:03d}.png", ids, "P")
    return root


def test_the_document_through_a_dask_scheduler_is_byte_identical(client, masks):
    local = run("scan", masks, "--ignore-index", "255", "-q")
    assert local.exit_code == 0
    address = client.scheduler.address
    on_dask = run("scan", masks, "--ignore-index", "255", "-q", "--scheduler", address)
    assert on_dask.exit_code == 0, on_dask.stderr
    assert on_dask.stdout == local.stdout


def test_the_library_takes_a_dask_clients_executor(client, masks):
    spec = LabelSpec(ignore_index=(255,))
    done = []
    result = scan(
        [masks], spec, executor=client.get_executor(), progress=lambda d, t: done.append(d)
    )
    assert result.counts == scan([masks], spec).counts
    assert result.source == scan([masks], spec).source
    assert done[-1] == 300 and done == sorted(done)  # progress follows finished tasks
    assert len(done) > 2


def test_an_unreachable_scheduler_is_one_line_exit_3(masks):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        result = run("scan", masks, "-q", "--scheduler", "tcp://127.0.0.1:9")
    assert_one_line_error(result, 3, "tcp://127.0.0.1:9", "cannot reach the Dask scheduler")


def test_a_dask_worker_that_dies_is_one_error(client):
    # Last in this module: the cluster's nanny restarts the worker meanwhile.
    scan_module = sys.modules["classweights.scan"]
    with pytest.raises(ClassWeightsError, match=r"^a worker process ended unexpectedly \(a Dask"):
        list(scan_module.run_tasks(os._exit, [3], client.get_executor(), in_flight=1))
