"""Fixtures shared between test modules."""

import fcntl
import json
import os
from pathlib import Path

import pytest

# Under pytest-xdist every core already runs a worker: each worker's XLA keeps to one thread
# (XLA:CPU sizes its pool from PJRT_NPROC, read when JAX starts).
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("PJRT_NPROC", "1")

#: Test modules that take minutes (a SLURM cluster, the whole workflow) go first, one to each
#: worker, so that the workers finish together; the module that reads test_workflow.py's run
#: goes last, when that run is made.
FIRST = ("test_slurm.py", "test_workflow.py")
LAST = ("test_import_workflow.py",)


def pytest_collection_modifyitems(items):
    """Order the modules for pytest-xdist (``--no-loadscope-reorder`` keeps this order)."""

    def rank(item):
        name = item.path.name
        return FIRST.index(name) if name in FIRST else len(FIRST) + (name in LAST)

    items.sort(key=rank)  # stable: the order inside each module is kept


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, worker_id):
    """config/test.yaml's whole DAG, run once per test run (see test_workflow.run_test_study).

    The test modules run in parallel, each whole on one worker process (pytest-xdist,
    ``--dist loadfile``); the two modules that use this run may be on different workers, so the
    first to ask makes it under a file lock and records where it is, and the other reads that.
    """
    from test_workflow import run_test_study

    if worker_id == "master":  # not under pytest-xdist
        return run_test_study(tmp_path_factory)
    shared = tmp_path_factory.getbasetemp().parent
    record = shared / "finished_run.json"
    with open(shared / "finished_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            workdir, info = run_test_study(tmp_path_factory)
            record.write_text(json.dumps({"workdir": str(workdir), "info": info}, default=str))
    saved = json.loads(record.read_text())
    for kill in saved["info"]["interruptions"]:
        kill["trajectories"] = [Path(p) for p in kill["trajectories"]]
    return Path(saved["workdir"]), saved["info"]
