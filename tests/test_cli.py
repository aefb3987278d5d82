"""The command line's process-level behaviour."""

import os
import subprocess
import sys

import pytest

from softness import cli

# Runs a jitted computation after the command line's set-up and prints the size of XLA:CPU's
# worker pool (its threads are named "...XLAEigen").
PROBE = """
import os
from softness import cli
cli.set_up_xla()
import jax, jax.numpy as jnp
jax.jit(lambda a: (a * a).sum())(jnp.ones((256, 256))).block_until_ready()
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print(sum(name.endswith("XLAEigen") for name in names))
"""


def xla_cpu_threads(**env_changes):
    env = {k: v for k, v in os.environ.items() if k not in ("PJRT_NPROC", "NPROC", "OMP_NUM_THREADS")}
    env.update(env_changes)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="thread names are read from Linux's /proc")
def test_xla_uses_the_threads_a_job_is_given():
    # Snakemake gives every rule's job OMP_NUM_THREADS = its threads; without the set-up XLA
    # sizes its pool to the whole machine (two single-thread MD jobs then share 4 busy threads).
    assert xla_cpu_threads(OMP_NUM_THREADS="1") == 1
    assert xla_cpu_threads(OMP_NUM_THREADS="3") == 3
    # an explicit PJRT_NPROC wins
    assert xla_cpu_threads(OMP_NUM_THREADS="1", PJRT_NPROC="2") == 2


def test_xla_flags_ask_for_wide_vectors_and_keep_the_users_own(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # (the thread pool is left alone)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    cli.set_up_xla()
    assert os.environ["XLA_FLAGS"] == cli.XLA_CPU_FLAGS
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    cli.set_up_xla()
    assert os.environ["XLA_FLAGS"].split() == ["--xla_dump_to=/tmp/x", cli.XLA_CPU_FLAGS]
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_prefer_vector_width=256")
    cli.set_up_xla()
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_prefer_vector_width=256"
