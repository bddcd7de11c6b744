"""A real, throw-away Slurm 22.05 cluster on this one machine, for the `@pytest.mark.slurm` tests.

What runs (all started here, all stopped here by pid): one `munged -F`, one `slurmctld -D` and N ordinary
`slurmd -D -N nX` daemons (one per emulated node, each with its own Port=), every one of them inside a private
mount namespace (`unshare -m`) in which `/etc/hosts` is bind-mounted from a copy that adds `n1 n2 ...` ->
127.0.0.1, so node names resolve for MASTER_ADDR without touching the machine's /etc/hosts. Jobs are children
of slurmd, so they inherit that namespace. (Where mount namespaces are not allowed, the names are appended to
/etc/hosts with a marker comment instead and removed again on stop.)

Facts this relies on (measured on Debian 12, slurm-wlm 22.05.8, root, no cgroups):
- daemons must be started through links named exactly `slurmctld`, `slurmd`, `slurmstepd` (Slurm checks
  argv[0]; as `slurmd-wlm` every `Gres=` is silently dropped); slurmd gets `-d <slurmstepd link>`;
- ProctrackType=proctrack/linuxproc, TaskPlugin=task/none, SlurmdParameters=config_overrides (declare more
  CPUs than the host has), SelectType=select/cons_tres;
- GPUs: `Gres=gpu:K` needs `File=` devices, else the node drains: fake character devices `mknod nvidiaN c 195 N`
  (they are never opened; they only give Slurm something to count and CUDA_VISIBLE_DEVICES its indices);
- munged runs as root with `--force -F`, its socket directory mode 755, `AuthInfo=socket=...` in slurm.conf;
- no slurmdbd: `sacct` is replaced on PATH by `.ci/slurm/sacct` (a stand-in answering from `scontrol show job`,
  which keeps finished jobs for MinJobAge seconds), so submitit's watcher and `soraplan status` see final states.

Clients find the cluster through the environment `SlurmCluster.env` (SLURM_CONF, PATH with the sacct stand-in).
Usable by hand too:  python tests/slurm_cluster.py DIR   (starts, prints the env, waits for Ctrl-C, stops).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SACCT_STANDIN = REPO / ".ci" / "slurm" / "sacct"
SBIN_CANDIDATES = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")


def _find(name: str) -> str | None:
    """The real binary for slurmctld/slurmd/slurmstepd (Debian names them *-wlm behind alternatives)."""
    for d in SBIN_CANDIDATES:
        for cand in (name, f"{name}-wlm"):
            p = Path(d) / cand
            if p.exists():
                return str(p.resolve())
    return None


def why_not_startable() -> str | None:
    """None if a local cluster can be started here, else the reason (the skip message)."""
    if os.geteuid() != 0:
        return "local Slurm cluster needs root (munged/slurmd run as root); not root here"
    missing = [b for b in ("slurmctld", "slurmd", "slurmstepd") if _find(b) is None]
    missing += [b for b in ("munged", "sbatch", "squeue", "scontrol", "scancel", "srun", "unshare", "mknod")
                if shutil.which(b) is None]
    if missing:
        return f"Slurm/munge binaries absent: {', '.join(missing)} (apt-get install slurmctld slurmd slurm-client munge)"
    return None


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class SlurmCluster:
    """Start/stop a local cluster of `nodes` emulated nodes with `gpus_per_node` fake GPUs each."""

    def __init__(self, root: Path, nodes: int = 2, cpus_per_node: int = 8, gpus_per_node: int = 2,
                 mem_mib: int = 8000):
        self.root = Path(root)
        self.nodes = [f"n{i + 1}" for i in range(nodes)]
        self.cpus_per_node, self.gpus_per_node, self.mem_mib = cpus_per_node, gpus_per_node, mem_mib
        self.procs: list[subprocess.Popen] = []
        self.env: dict[str, str] = {}
        self.hosts_mode = "namespace"

    # --- config text (pure) ---
    def slurm_conf(self, ctld_port: int, node_ports: list[int]) -> str:
        r = self.root
        lines = [
            "ClusterName=soraplan-test",
            f"SlurmctldHost={socket.gethostname()}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={r}/munge/munge.socket.2,cred_expire=10",  # requeued jobs wait cred_expire+1 s
            f"StateSaveLocation={r}/state", f"SlurmdSpoolDir={r}/spool/%n",
            f"SlurmctldPidFile={r}/run/slurmctld.pid", f"SlurmdPidFile={r}/run/slurmd.%n.pid",
            f"SlurmctldLogFile={r}/log/slurmctld.log", f"SlurmdLogFile={r}/log/slurmd.%n.log",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SlurmdParameters=config_overrides",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU", "GresTypes=gpu",
            "SchedulerType=sched/backfill", "SchedulerParameters=sched_interval=1",
            "MpiDefault=none", "ReturnToService=2", "JobRequeue=1",
            "AccountingStorageType=accounting_storage/none", "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MinJobAge=3600", "KillWait=5", "InactiveLimit=0", "SlurmdTimeout=60", "SlurmctldTimeout=60",
            "MessageTimeout=20", "UnkillableStepTimeout=60",
            f"TmpFS={r}/tmp",
        ]
        for name, port in zip(self.nodes, node_ports):
            lines.append(f"NodeName={name} NodeAddr=127.0.0.1 NodeHostname={name} Port={port} "
                         f"CPUs={self.cpus_per_node} RealMemory={self.mem_mib} Gres=gpu:{self.gpus_per_node} State=UNKNOWN")
        lines.append(f"PartitionName=debug Nodes={','.join(self.nodes)} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO")
        return "\n".join(lines) + "\n"

    def gres_conf(self) -> str:
        last = self.gpus_per_node - 1
        return "".join(f"NodeName={n} Name=gpu File={self.root}/dev/{n}/nvidia[0-{last}]\n" for n in self.nodes)

    # --- process work ---
    def _spawn(self, argv: list[str], log: str) -> subprocess.Popen:
        """Start a daemon inside a private mount namespace whose /etc/hosts knows the node names
        (or directly, when the machine's /etc/hosts got the names instead: see `_hosts_mode`)."""
        hosts = self.root / "etc" / "hosts"
        if self.hosts_mode == "namespace":
            inner = f"mount --bind {hosts} /etc/hosts && exec " + " ".join(argv)
            cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", inner]
        else:
            cmd = argv
        out = open(self.root / "log" / log, "ab")
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
                             start_new_session=True)
        out.close()
        self.procs.append(p)
        return p

    def start(self, timeout_s: float = 60) -> "SlurmCluster":
        r = self.root
        for d in ("etc", "bin", "state", "run", "log", "tmp", "munge", "munge/lib", "spool"):
            (r / d).mkdir(parents=True, exist_ok=True)
        os.chmod(r / "munge", 0o755)
        os.chmod(r, 0o755)
        for n in self.nodes:
            (r / "spool" / n).mkdir(exist_ok=True)
            (r / "dev" / n).mkdir(parents=True, exist_ok=True)
            for i in range(self.gpus_per_node):
                dev = r / "dev" / n / f"nvidia{i}"
                if not dev.exists():
                    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(195, i))
        # links named exactly as Slurm expects (argv[0] matters)
        for b in ("slurmctld", "slurmd", "slurmstepd"):
            link = r / "bin" / b
            if not link.exists():
                link.symlink_to(_find(b))  # type: ignore[arg-type]
        # hosts file for the private namespace
        base = Path("/etc/hosts").read_text()
        (r / "etc" / "hosts").write_text(base.rstrip("\n") + "\n127.0.0.1 " + " ".join(self.nodes) + "\n")
        self.hosts_mode = self._hosts_mode()
        ctld_port, *node_ports = _free_ports(1 + len(self.nodes))
        conf = r / "etc" / "slurm.conf"
        conf.write_text(self.slurm_conf(ctld_port, node_ports))
        (r / "etc" / "gres.conf").write_text(self.gres_conf())
        key = r / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
            os.chmod(key, 0o400)
        self.env = dict(os.environ)
        self.env.update(SLURM_CONF=str(conf), PATH=f"{SACCT_STANDIN.parent}:{self.env.get('PATH', '')}")
        for k in list(self.env):
            if k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_")) and k != "SLURM_CONF":
                del self.env[k]
        self._spawn(["munged", "--force", "-F", f"--socket={r}/munge/munge.socket.2", f"--key-file={key}",
                     f"--pid-file={r}/run/munged.pid", f"--log-file={r}/log/munged.log",
                     f"--seed-file={r}/munge/lib/seed"], "munged.out")
        self._wait(lambda: (r / "munge" / "munge.socket.2").exists(), 10, "munged socket")
        self._spawn([str(r / "bin" / "slurmctld"), "-D", "-i", "-f", str(conf)], "slurmctld.out")
        for n in self.nodes:
            self._spawn([str(r / "bin" / "slurmd"), "-D", "-N", n, "-f", str(conf), "-d", str(r / "bin" / "slurmstepd")],
                        f"slurmd.{n}.out")
        self._wait(self._all_idle, timeout_s, "all nodes idle")
        return self

    HOSTS_MARK = "# soraplan-test-slurm"

    def _hosts_mode(self) -> str:
        """'namespace' if a private mount namespace with a bind-mounted /etc/hosts works here; else append
        `127.0.0.1 n1 n2 ... # soraplan-test-slurm` to /etc/hosts (removed again by stop()): 'etc-hosts'."""
        probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                f"mount --bind {self.root}/etc/hosts /etc/hosts && getent hosts {self.nodes[0]}"],
                               capture_output=True, text=True)
        if probe.returncode == 0:
            return "namespace"
        missing = [n for n in self.nodes if subprocess.run(["getent", "hosts", n], capture_output=True).returncode]
        if missing:
            with open("/etc/hosts", "a") as f:
                f.write(f"127.0.0.1 {' '.join(missing)} {self.HOSTS_MARK}\n")
            self._added_hosts = True
        return "etc-hosts"

    def _remove_hosts(self) -> None:
        if getattr(self, "_added_hosts", False):
            text = Path("/etc/hosts").read_text()
            Path("/etc/hosts").write_text("".join(l for l in text.splitlines(True) if not l.rstrip().endswith(self.HOSTS_MARK)))
            self._added_hosts = False

    def _all_idle(self) -> bool:
        dead = [p for p in self.procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"a Slurm daemon exited (rc {dead[0].returncode}); see {self.root}/log")
        out = self.run(["sinfo", "-h", "-N", "-o", "%N %t"], check=False).stdout
        states = dict(line.split() for line in out.splitlines() if line.strip())
        return len(states) == len(self.nodes) and all(s == "idle" for s in states.values())

    @staticmethod
    def _wait(pred, timeout_s: float, what: str) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if pred():
                return
            time.sleep(0.3)
        raise RuntimeError(f"local Slurm: timed out waiting for {what}")

    def run(self, argv: list[str], check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=env or self.env, capture_output=True, text=True, check=check, timeout=60)

    def queue_empty(self) -> bool:
        return not self.run(["squeue", "-h", "-o", "%i"], check=False).stdout.strip()

    def cancel_all(self, timeout_s: float = 60) -> None:
        ids = self.run(["squeue", "-h", "-o", "%i"], check=False).stdout.split()
        if ids:
            self.run(["scancel", *ids], check=False)
        self._wait(self.queue_empty, timeout_s, "an empty queue")

    def stop(self) -> None:
        """Cancel jobs, wait for an empty queue, then stop exactly the daemons started here."""
        try:
            if self.procs and all(p.poll() is None for p in self.procs):
                self.cancel_all()
        except Exception as e:  # noqa: BLE001 - stopping must go on
            sys.stderr.write(f"local Slurm: {e}\n")
        for p in reversed(self.procs):  # slurmd's, slurmctld, then munged
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)
        self.procs.clear()
        self._remove_hosts()


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/soraplan-slurm").resolve()
    why = why_not_startable()
    if why:
        sys.exit(why)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))  # stop on TERM too
    c = SlurmCluster(target).start()
    print(f"export SLURM_CONF={c.env['SLURM_CONF']} PATH={SACCT_STANDIN.parent}:$PATH   # Ctrl-C stops the cluster")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        c.stop()
