"""Fixtures shared between test modules."""

import pytest

#: Modules that share a session fixture run on the same worker, so that it is made once.
SAME_WORKER = {"test_import_workflow": "test_workflow"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    """One xdist group per test module (module-scoped fixtures such as the SLURM cluster are
    made once), modules sharing :func:`finished_run` in one group."""
    for item in items:
        module = item.module.__name__.rpartition(".")[2]
        item.add_marker(pytest.mark.xdist_group(SAME_WORKER.get(module, module)))


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """config/test.yaml's whole DAG, run once per session (see test_workflow.run_test_study)."""
    from test_workflow import run_test_study

    return run_test_study(tmp_path_factory)
