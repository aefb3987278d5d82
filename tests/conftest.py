"""Fixtures shared between test modules."""

import pytest


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """config/test.yaml's whole DAG, run once per session (see test_workflow.run_test_study)."""
    from test_workflow import run_test_study

    return run_test_study(tmp_path_factory)
