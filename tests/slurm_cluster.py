"""A real single-node Slurm cluster for a test: munged, slurmctld and slurmd started in a
temporary folder with a minimal slurm.conf (Debian's `slurmctld`, `slurmd`, `slurm-client` and
`munge`; .ci/run installs them). Nothing is mocked: jobs are submitted with the real sbatch and
run by the real slurmd.

    cluster = SlurmCluster(folder); cluster.start(); ...; cluster.stop()

Commands (sbatch, squeue, scontrol, scancel) find this cluster through `cluster.env`
(SLURM_CONF). The daemons run as root (SlurmUser=root), on free local ports, with the process
tracker that needs no cgroups (proctrack/linuxproc), so it works in a container.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PROGRAMS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
PACKAGES = "slurmctld slurmd slurm-client munge"


def missing_reason() -> str | None:
    """Why a cluster cannot be started here, or None."""
    absent = [p for p in PROGRAMS if shutil.which(p) is None and not Path("/usr/sbin", p).exists()]
    if absent:
        return f"Slurm or munge is not installed ({', '.join(absent)} missing): apt-get install {PACKAGES}"
    if os.geteuid() != 0:
        return "starting slurmctld, slurmd and munged needs root"
    return None


def _program(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class SlurmCluster:
    def __init__(self, folder: Path, cpus: int = 2, memory_mb: int = 8000):
        self.folder = Path(folder)
        self.cpus, self.memory_mb = cpus, memory_mb
        self.node = socket.gethostname().split(".")[0]
        self.processes: list[subprocess.Popen] = []
        self.conf = self.folder / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def _daemon(self, argv: list[str], log: str) -> subprocess.Popen:
        out = open(self.folder / log, "wb")
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env
        )
        out.close()
        self.processes.append(process)
        return process

    def start(self, timeout: float = 60) -> None:
        f = self.folder
        for sub in ("munge", "state", "spool"):
            (f / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(f / "munge", 0o700)
        key = f / "munge" / "munge.key"
        subprocess.run(
            [_program("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True
        )
        os.chmod(key, 0o600)
        sock = f / "munge" / "munge.socket"
        self._daemon(
            [
                _program("munged"),
                "--foreground",
                "--force",
                f"--socket={sock}",
                f"--key-file={key}",
                f"--pid-file={f / 'munge' / 'munged.pid'}",
                f"--seed-file={f / 'munge' / 'munged.seed'}",
                f"--log-file={f / 'munge' / 'munged.log'}",
            ],
            "munged.out",
        )
        self._wait(lambda: sock.exists(), timeout, "munged did not create its socket")
        controller, node = _free_ports(2)
        self.conf.write_text(
            f"""ClusterName=gradertest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={controller}
SlurmdPort={node}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
StateSaveLocation={f / "state"}
SlurmdSpoolDir={f / "spool"}
SlurmctldPidFile={f / "slurmctld.pid"}
SlurmdPidFile={f / "slurmd.pid"}
SlurmctldLogFile={f / "slurmctld.log"}
SlurmdLogFile={f / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
KillWait=5
MinJobAge=600
InactiveLimit=0
Waittime=0
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN
PartitionName=test Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""
        )
        self._daemon([_program("slurmctld"), "-D", "-c", "-f", str(self.conf)], "slurmctld.out")
        self._daemon([_program("slurmd"), "-D", "-f", str(self.conf)], "slurmd.out")
        self._wait(
            lambda: self.node_state() in ("idle", "mixed", "allocated"), timeout, "the node never came up"
        )

    def node_state(self) -> str:
        done = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, env=self.env)
        return done.stdout.strip().rstrip("*~#") if done.returncode == 0 else ""

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            dead = [p for p in self.processes if p.poll() is not None]
            if dead:
                break
            time.sleep(0.5)
        raise RuntimeError(f"{what}; logs:\n{self.logs()}")

    def logs(self) -> str:
        parts = []
        for log in sorted(self.folder.glob("*.out")) + sorted(self.folder.glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)

    def run(self, *argv: str, check: bool = True) -> str:
        done = subprocess.run(list(argv), capture_output=True, text=True, env=self.env, timeout=60)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {done.stderr or done.stdout}")
        return done.stdout

    def job_states(self, job: str) -> dict[str, str]:
        """{job or array task id: state} as squeue sees it (finished jobs stay for MinJobAge)."""
        out = self.run("squeue", "-h", "-t", "all", "-j", job, "-o", "%i %T", check=False)
        return dict(line.split() for line in out.splitlines() if len(line.split()) == 2)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
