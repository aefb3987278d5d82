"""A one-node SLURM cluster on this machine, for tests (Debian's Slurm 22.05 and munge).

:class:`LocalSlurm` writes a minimal slurm.conf (no cgroups, no accounting, a fake GPU for
the GPU profile) into a directory of its own, links it into /etc/slurm while the cluster runs
(srun inside a job reads it there), starts munged (unless one already answers), slurmctld and
slurmd, and stops what it started by PID, newest first. When something is missing or a daemon
does not come up, :class:`SlurmUnavailable` says why in one line.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")
MUNGE_RUN = Path("/run/munge")
MUNGE_KEY = Path("/etc/munge/munge.key")
#: Where srun inside a job looks for the configuration (the job's environment does not carry
#: SLURM_CONF to it), so the cluster's files are linked here while it runs.
SLURM_ETC = Path("/etc/slurm")
#: Partitions: CPU jobs and (fake) GPU jobs, both on the one node.
CPU_PARTITION, GPU_PARTITION = "cpu", "gpu"
ACCOUNT = "ci"


class SlurmUnavailable(RuntimeError):
    """SLURM cannot start here; the message says why in one line."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / name).exists()), None)


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return f"(no log at {path})"
    errors = [ln for ln in lines if "error" in ln.lower() or "fatal" in ln.lower()]
    return (errors or lines or ["(empty log)"])[-1].strip()


class LocalSlurm:
    """A one-node SLURM in ``root``: ``start()``, ``env`` for client commands, ``stop()``."""

    def __init__(self, root: Path, cpus: int = 2, real_memory_mb: int = 64000):
        self.root = Path(root)
        self.cpus = cpus
        self.real_memory_mb = real_memory_mb
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.started: list[tuple[str, int]] = []  # (daemon, pid), in start order
        self.links: list[Path] = []  # the links to the configuration in /etc/slurm
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # ------------------------------------------------------------------ setup

    def _check_installed(self) -> None:
        missing = [n for n in DAEMONS + CLIENTS + ("munge", "unmunge") if _which(n) is None]
        if missing:
            raise SlurmUnavailable(
                f"SLURM is not installed ({', '.join(missing)} not found); .ci/run installs Debian's "
                "slurmctld slurmd slurm-client munge.")
        if os.geteuid() != 0:
            raise SlurmUnavailable("the test SLURM must be started as root (slurmd launches the jobs).")
        try:
            socket.gethostbyname(self.node)
        except OSError:
            raise SlurmUnavailable(f"the host name {self.node!r} does not resolve.") from None

    def _munge_answers(self) -> bool:
        try:
            cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=5)
            if cred.returncode:
                return False
            check = subprocess.run(["unmunge"], input=cred.stdout, capture_output=True, timeout=5)
            return check.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def _start_munge(self) -> None:
        if self._munge_answers():
            return  # a munged is already running (the machine's own); use it, leave it alone
        if not MUNGE_KEY.exists():
            raise SlurmUnavailable(f"{MUNGE_KEY} is missing; reinstall the munge package to create it.")
        MUNGE_RUN.mkdir(parents=True, exist_ok=True)
        shutil.chown(MUNGE_RUN, "munge", "munge")
        pidfile = MUNGE_RUN / "munged.pid"
        if pidfile.exists() and not _alive(_pid(pidfile) or 0):
            pidfile.unlink()  # stale, from a machine that was stopped hard
        res = subprocess.run(["runuser", "-u", "munge", "--", _which("munged")], capture_output=True,
                             text=True, timeout=30)
        if res.returncode:
            why = (res.stderr or res.stdout or "no output").strip().splitlines()[-1]
            raise SlurmUnavailable(f"munged did not start: {why}")
        self._wait(self._munge_answers, 10, "munged started but does not answer (munge -n | unmunge)")
        pid = _pid(pidfile)
        if pid:
            self.started.append(("munged", pid))

    def write_config(self) -> None:
        for d in ("state", "spool", "log"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        r = self.root
        self.conf.write_text(f"""\
# A one-node cluster for the tests (tests/slurm_cluster.py): no cgroups, no accounting.
ClusterName=softness
SlurmctldHost={self.node}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
# Finished jobs stay visible to squeue (the profiles' status command) for 10 minutes.
MinJobAge=600
# SIGTERM at the wall time, SIGKILL 10 s later.
KillWait=10
# Memory is bookkeeping only here (nothing enforces it without cgroups): the node may claim
# more than the machine has, so the profiles' requests fit.
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName={self.node} CPUs={self.cpus} RealMemory={self.real_memory_mb} Gres=gpu:1 State=UNKNOWN
PartitionName={CPU_PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
PartitionName={GPU_PARTITION} Nodes={self.node} MaxTime=INFINITE State=UP
""")
        (r / "gres.conf").write_text(f"NodeName={self.node} Name=gpu File=/dev/null\n")
        for name in ("slurm.conf", "gres.conf"):
            link = SLURM_ETC / name
            if link.is_symlink() and not link.exists():
                link.unlink()  # left by a cluster of an earlier run that was stopped hard
            if link.exists() or link.is_symlink():
                raise SlurmUnavailable(f"{link} exists (another SLURM's configuration); not replacing it.")
            SLURM_ETC.mkdir(parents=True, exist_ok=True)
            link.symlink_to(r / name)
            self.links.append(link)

    @staticmethod
    def _wait(predicate, timeout: float, why: str) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if predicate():
                return
            time.sleep(0.2)
        raise SlurmUnavailable(why)

    def _start_daemon(self, name: str) -> None:
        log = self.root / "log" / f"{name}.log"
        pidfile = self.root / f"{name}.pid"
        res = subprocess.run([_which(name), "-f", str(self.conf)], env=self.env, capture_output=True,
                             text=True, timeout=30)
        if res.returncode:
            out = (res.stderr or res.stdout).strip().splitlines() or [_last_line(log)]
            raise SlurmUnavailable(f"{name} did not start: {out[-1]}")
        self._wait(lambda: _pid(pidfile) is not None, 10, f"{name} wrote no pid file: {_last_line(log)}")
        self.started.append((name, _pid(pidfile)))

    def node_state(self) -> str:
        res = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env, capture_output=True, text=True,
                             timeout=10)
        return res.stdout.strip().splitlines()[0] if res.returncode == 0 and res.stdout.strip() else ""

    def start(self) -> LocalSlurm:
        self._check_installed()
        self.root.mkdir(parents=True, exist_ok=True)
        self.write_config()
        self._start_munge()
        self._start_daemon("slurmctld")
        self._wait(lambda: subprocess.run(["scontrol", "ping"], env=self.env, capture_output=True,
                                          timeout=10).returncode == 0,
                   20, f"slurmctld does not answer: {_last_line(self.root / 'log' / 'slurmctld.log')}")
        self._start_daemon("slurmd")
        self._wait(lambda: self.node_state().rstrip("*") in ("idle", "mixed", "allocated"), 30,
                   f"the node did not come up ({self.node_state() or 'no state'}): "
                   f"{_last_line(self.root / 'log' / 'slurmd.log')}")
        return self

    # ------------------------------------------------------------------ use

    def run(self, *args, check=True) -> str:
        res = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=60)
        if check and res.returncode:
            raise RuntimeError(f"{' '.join(args)}: {res.stderr.strip()}")
        return res.stdout

    def jobs(self) -> list[dict]:
        """Every job slurmctld still knows, as dicts of `scontrol show job -o` fields."""
        out = self.run("scontrol", "show", "job", "-o", check=False)
        jobs = []
        for line in out.splitlines():
            if "JobId=" not in line:
                continue
            fields = {}
            for token in line.split():
                if "=" in token:
                    k, v = token.split("=", 1)
                    fields[k] = v
            jobs.append(fields)
        return jobs

    # ------------------------------------------------------------------ teardown

    def stop(self) -> None:
        if any(n == "slurmctld" for n, _ in self.started):
            subprocess.run(["scancel", "--full", "-u", "root"], env=self.env, capture_output=True, timeout=30)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 20 and self.run("squeue", "-h", "-t", "R,CG", check=False).strip():
                time.sleep(0.5)
        for _name, pid in reversed(self.started):
            if not _alive(pid):
                continue
            os.kill(pid, signal.SIGTERM)
            t0 = time.monotonic()
            while _alive(pid) and time.monotonic() - t0 < 15:
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.started.clear()
        for pidfile in (self.root / "slurmctld.pid", self.root / "slurmd.pid"):
            pidfile.unlink(missing_ok=True)
        for link in self.links:
            if link.is_symlink() and link.resolve().is_relative_to(self.root.resolve()):
                link.unlink()
        self.links.clear()
