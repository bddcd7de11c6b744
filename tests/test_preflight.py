"""launch/preflight.py: parsing `scontrol show partition/node -o`, the pure Slurm and Kubernetes checks, and
the Kubernetes preflight against the kmock emulator (the Slurm one on a real cluster: test_preflight_slurm.py)."""

from __future__ import annotations

import pytest

from soraplan.launch.preflight import (K8sFacts, K8sRequest, SlurmNode, SlurmPartition, SlurmRequest, check_k8s,
                                       check_slurm, parse_gpus, parse_nodes, parse_partitions, parse_time_min,
                                       slurm_facts)

PARTITIONS = (
    "PartitionName=debug AllowGroups=ALL AllowAccounts=ALL Default=YES QoS=N/A DefaultTime=NONE MaxNodes=UNLIMITED "
    "MaxTime=UNLIMITED MinNodes=0 MaxCPUsPerNode=UNLIMITED Nodes=n[1-2] State=UP TotalCPUs=16 TotalNodes=2 "
    "DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED TRES=cpu=16,mem=2000M,node=2,billing=16,gres/gpu=4\n"
    "PartitionName=short Default=NO MaxNodes=1 MaxTime=01:00:00 MaxCPUsPerNode=4 Nodes=n1 State=UP "
    "MaxMemPerNode=512\n"
    "PartitionName=old Default=NO MaxTime=2-00:00:00 Nodes=n3 State=INACTIVE\n")
NODES = (
    "NodeName=n1 Arch=x86_64 CoresPerSocket=1 CPUAlloc=0 CPUEfctv=8 CPUTot=8 CPULoad=0.50 Gres=gpu:2 "
    "NodeAddr=127.0.0.1 OS=Linux 6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC RealMemory=1000 AllocMem=0 State=IDLE "
    "Partitions=debug,short CfgTRES=cpu=8,mem=1000M,billing=8,gres/gpu=2 AllocTRES=\n"
    "NodeName=n2 CPUTot=8 Gres=gpu:a100:2(S:0) RealMemory=1000 State=MIXED Partitions=debug CfgTRES=cpu=8,mem=1000M\n"
    "NodeName=n3 CPUTot=64 Gres=(null) RealMemory=256000 State=DOWN+DRAIN Partitions=old CfgTRES=cpu=64\n")


@pytest.mark.parametrize("text, minutes", [
    ("UNLIMITED", None), ("INFINITE", None), ("60", 60), ("30:00", 30), ("30:10", 31), ("01:00:00", 60),
    ("1-00:00:00", 1440), ("2-12", 2 * 1440 + 720), ("1-02:03", 1440 + 123), ("00:00:30", 1),
])
def test_time_formats(text, minutes):
    assert parse_time_min(text) == minutes


@pytest.mark.parametrize("tres, gres, gpus", [
    ("cpu=8,mem=1000M,billing=8,gres/gpu=2", "gpu:2", 2),
    ("cpu=8", "gpu:a100:8(S:0-1)", 8),
    ("cpu=8", "gpu:a100:4(S:0),gpu:t4:2(S:1)", 6),
    ("cpu=8", "(null)", 0),
    ("", "", 0),
    ("cpu=8,gres/gpu:a100=4,gres/gpu=4", "", 4),
])
def test_gpu_counts(tres, gres, gpus):
    assert parse_gpus(tres, gres) == gpus


def test_parse_partitions_and_nodes():
    parts = {p.name: p for p in parse_partitions(PARTITIONS)}
    assert parts["debug"] == SlurmPartition("debug", True, "UP", None, None, None, None)
    assert parts["short"] == SlurmPartition("short", False, "UP", 60, 1, 4, 512)
    assert parts["old"].state == "INACTIVE" and parts["old"].max_time_min == 2880
    nodes = {n.name: n for n in parse_nodes(NODES)}
    assert nodes["n1"] == SlurmNode("n1", 8, 1000, 2, "IDLE", ("debug", "short"))
    assert nodes["n2"].gpus == 2 and nodes["n2"].cpus == 8
    assert nodes["n3"].gpus == 0 and nodes["n3"].partitions == ("old",)


def facts():
    return slurm_facts(lambda *a: PARTITIONS if a[1] == "partition" else NODES)


def req(**kw):
    base = dict(partition=None, nodes=2, tasks_per_node=2, gpus_per_node=2, cpus_per_task=2, mem_gib=None, time_min=60)
    return SlurmRequest(**{**base, **kw})


@pytest.mark.parametrize("kw, needles", [
    ({}, []),
    ({"partition": "debug", "mem_gib": None}, []),
    ({"cpus_per_task": 8}, ["--cpus-per-task 8 x 2 tasks per node = 16 CPUs > 8 CPUs on every node of partition debug"]),
    ({"gpus_per_node": 4, "tasks_per_node": 4, "cpus_per_task": 1},
     ["4 GPUs per node > 2 GPUs on every node of partition debug"]),
    ({"mem_gib": 2}, ["--mem-gib 2 = 2,048 MiB > 1,000 MiB on every node of partition debug"]),
    ({"nodes": 3}, ["needs 3 nodes with 2 GPUs, 4 CPUs each; partition debug has 2 such nodes"]),
    ({"partition": "gpu"}, ["--partition gpu: no such partition (partitions: debug, short, old)"]),
    ({"partition": "short", "nodes": 1, "time_min": 90}, ["--time-min 90 > MaxTime of partition short (60 min)"]),
    ({"partition": "short", "nodes": 2}, ["2 nodes > MaxNodes of partition short (1 per job)"]),
    ({"partition": "short", "nodes": 1, "cpus_per_task": 3}, ["6 CPUs > MaxCPUsPerNode of partition short (4)"]),
    ({"partition": "short", "nodes": 1, "mem_gib": 1},
     ["1,024 MiB > MaxMemPerNode of partition short (512 MiB)", "1,024 MiB > 1,000 MiB on every node of partition short"]),
    ({"partition": "old", "nodes": 1, "gpus_per_node": 1, "tasks_per_node": 1},
     ["partition old is INACTIVE", "1 GPUs per node > 0 GPUs on every node of partition old"]),
])
def test_check_slurm(kw, needles):
    problems = check_slurm(req(**kw), *facts())
    assert len(problems) == len(needles), problems
    for needle, problem in zip(needles, problems):
        assert needle in problem, (needle, problem)


def test_no_default_partition_is_named():
    parts, nodes = facts()
    no_default = [SlurmPartition(p.name, False, p.state, p.max_time_min, p.max_nodes) for p in parts]
    assert "no --partition given and the cluster has no default partition" in check_slurm(req(), no_default, nodes)[0]


def test_mixed_node_sizes_say_at_most():
    nodes = [SlurmNode("a", 4, 100, 2, "IDLE", ("p",)), SlurmNode("b", 8, 100, 2, "IDLE", ("p",))]
    parts = [SlurmPartition("p", True, "UP", None, None)]
    assert "16 CPUs > at most 8 CPUs on any node of partition p" in check_slurm(req(cpus_per_task=8), parts, nodes)[0]
    # one node big enough, two needed: the count is the problem
    assert "partition p has 1 such node (2 in all)" in check_slurm(req(cpus_per_task=3), parts, nodes)[0]


K8S = K8sRequest(namespace="team-a", kind="JobSet", crd="jobsets.jobset.x-k8s.io", nodes=2, gpus_per_node=8,
                 gpu_resource="nvidia.com/gpu")


@pytest.mark.parametrize("facts_, needles", [
    (K8sFacts(True, True, (8, 8)), []),
    (K8sFacts(None, None, None), []),                     # nothing readable: nothing held against the job
    (K8sFacts(False, True, None), ["namespace 'team-a' does not exist"]),
    (K8sFacts(True, False, None), ["the JobSet CRD (jobsets.jobset.x-k8s.io) is not installed: install it"]),
    (K8sFacts(True, True, (8, 4)), ["needs 2 nodes with 8 nvidia.com/gpu each; the cluster has 1 (largest node: 8"]),
    (K8sFacts(True, True, ()), []),
])
def test_check_k8s(facts_, needles):
    problems = check_k8s(K8S, facts_, "install it")
    assert len(problems) == len(needles), problems
    for needle, problem in zip(needles, problems):
        assert needle in problem
