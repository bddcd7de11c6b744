"""The real 6B per rank at the plan's winning layouts: one process plays one rank of the layout's world
(8 GPUs for tp·cp = 8) under torch's fake process-group backend (the technique torchtitan uses for memory
estimation).

`run_fake(jobs)` starts one subprocess (`python -m soraplan.validation.measure_fake`) that, for every
(spec, rank) job, initialises torch.distributed with the "fake" backend (`FakeStore`, world = spec.parallel.gpus,
this rank), Megatron's parallel_state for the spec's tp / cp, builds the model on the meta device and runs one
training forward + backward on meta. Nothing is computed and nothing is sent: collectives return at once and
leave their outputs as allocated (shapes only). Per rank it records

  * parameters and their bytes (`sum(p.numel())`, the parameters' dtype);
  * the trainer's optimizer (`models.zero.build_optimizer`: the flat-buffer distributed optimizer over the
    dp·cp ranks), built after the backward and stepped once on meta: the optimizer-state bytes read from its
    own state (`zero.state_bytes`: fp32 master copy + two fp32 moments of this rank's shard), its shard
    (elements), the padded flat parameter and gradient buffers, and the bytes of its reduce_scatter_tensor
    and all_gather_into_tensor per group (`comm_step`);
  * saved-for-backward bytes (`measure.record_saved`, in and outside the transformer block);
  * communication bytes per kind and group (`comm_count`), and
  * a shape check of every collective as the dispatcher sees it (`c10d` ops): all-gather outputs are the
    input times the group size along dim 0, reduce-scatter the reverse, all-to-all keeps its shape, every
    received ring chunk has the shape of a sent one, every buffer is on meta. A fake collective moves no
    data, so these relations are what makes the meta run stand for a real one.

The plan's layouts at their own GPU counts (`PLAN_LAYOUTS`: dp > 1, a world of 198 to 400 fake ranks) are
built and their optimizer stepped only (no forward): parameters, weights and the optimizer rows, the shard
over dp·cp as `plan` prices it. The pipelined runners-up (`STAGE_LAYOUTS`): parameters, weight and
optimizer bytes of their first and last stage, and the first stage's saved bytes of one micro-batch (its
forward, then its backward from a gradient of the output's shape; how many micro-batches are in flight is
the pipeline rows' part); an interleaved layout (vpp > 1) has each rank's vpp model chunks built and its
optimizer stepped, no forward (the interleaved schedule's saved bytes are the small matrix's PP=2 vpp=2
rows). The parent (`fake_rows`) compares them with `planner.params.params_per_gpu`, `planner.memory`,
`planner.activations.stage_activations` (with planner/cp.py's terms), `planner.comm.comm_bytes` and, for the
optimizer, `planner.memory.memory_terms` / `optimizer_shard` and `planner.comm.dp_comm_bytes`, all exact.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# the seed's geometry (the `soraplan-6B` preset, 960 frames at 256x256: 30,720 tokens) at the layouts
# `soraplan plan --frames 960 --res 256 --gpu a100-80g --gpus 200,300,400` ranks first, each on the
# world of its model-parallel group (dp = 1); (flags, ranks measured)
SEED_LAYOUTS: tuple[tuple[dict[str, Any], tuple[int, ...]], ...] = (
    ({"tp": 1, "cp": 8, "cp_comm": "p2p", "sequence_parallel": False}, (0, 7)),
    ({"tp": 2, "cp": 4, "cp_comm": "p2p", "sequence_parallel": True}, (0, 7)),
    ({"tp": 2, "cp": 2, "cp_comm": "p2p", "sequence_parallel": True, "gpus": 4}, (3,)),
    ({"tp": 1, "cp": 8, "cp_comm": "all-gather", "sequence_parallel": False}, (0,)),
    ({"tp": 2, "cp": 4, "cp_comm": "all-gather", "sequence_parallel": True}, (0,)),
    # dp 2: at dp·cp = 1 the trainer keeps replicated AdamW, which is not what `plan` prices
    ({"tp": 3, "cp": 1, "cp_comm": "p2p", "sequence_parallel": True, "gpus": 6}, (0, 5)),
)
WORLD = 8
# the pipelined runners-up (dp = 1): parameters, weights and optimizer state of the first and the last
# stage, and the first stage's saved bytes of one micro-batch (the in-flight count is the pp rows' part)
STAGE_LAYOUTS: tuple[tuple[dict[str, Any], tuple[int, ...]], ...] = (
    ({"tp": 1, "pp": 2, "cp": 4, "cp_comm": "p2p", "sequence_parallel": False, "gpus": 8}, (0, 7)),
    ({"tp": 1, "pp": 2, "cp": 8, "cp_comm": "p2p", "sequence_parallel": False, "gpus": 16}, (0, 15)),
    ({"tp": 1, "pp": 5, "cp": 8, "cp_comm": "p2p", "sequence_parallel": False, "gpus": 40}, (0, 39)),
    # interleaved 1F1B: each rank's vpp model chunks built and the optimizer stepped (no forward: the chunks'
    # schedule is the small matrix's PP=2 vpp=2 rows)
    ({"tp": 2, "pp": 2, "vpp": 4, "cp": 2, "cp_comm": "p2p", "sequence_parallel": True, "gpus": 8}, (0, 7)),
)

# the plan's top layouts at their own GPU counts (dp > 1): built and one optimizer step only, for the
# distributed optimizer's shard over dp·cp, its padded buffers and its DP-CP traffic; (flags, ranks)
PLAN_LAYOUTS: tuple[tuple[dict[str, Any], tuple[int, ...]], ...] = (
    ({"tp": 1, "cp": 8, "cp_comm": "p2p", "sequence_parallel": False, "gpus": 200}, (0, 199)),
    ({"tp": 1, "pp": 2, "cp": 4, "cp_comm": "p2p", "sequence_parallel": False, "gpus": 200}, (0, 199)),
    ({"tp": 1, "pp": 5, "cp": 8, "cp_comm": "p2p", "sequence_parallel": False, "gpus": 200}, (0, 199)),
    ({"tp": 2, "cp": 2, "cp_comm": "p2p", "sequence_parallel": True, "gpus": 300}, (299,)),
    ({"tp": 2, "cp": 4, "cp_comm": "p2p", "sequence_parallel": True, "gpus": 296}, (0,)),
    ({"tp": 1, "pp": 2, "cp": 8, "cp_comm": "p2p", "sequence_parallel": False, "gpus": 400}, (399,)),
    # the top three at 200 GPUs with the fitted step model and interleaving, and the leaders at 300 and 400
    ({"tp": 2, "cp": 2, "cp_comm": "p2p", "sequence_parallel": True, "gpus": 200}, (0, 199)),
    ({"tp": 3, "cp": 1, "cp_comm": "p2p", "sequence_parallel": True, "gpus": 198}, (0, 197)),
    ({"tp": 2, "pp": 2, "vpp": 4, "cp": 2, "cp_comm": "p2p", "sequence_parallel": True, "gpus": 200}, (0, 199)),
    ({"tp": 3, "cp": 1, "cp_comm": "p2p", "sequence_parallel": True, "gpus": 300}, (299,)),
    ({"tp": 3, "pp": 2, "vpp": 5, "cp": 1, "cp_comm": "p2p", "sequence_parallel": True, "gpus": 300}, (299,)),
    ({"tp": 3, "cp": 1, "cp_comm": "p2p", "sequence_parallel": True, "gpus": 399}, (398,)),
    ({"tp": 2, "pp": 2, "vpp": 5, "cp": 2, "cp_comm": "p2p", "sequence_parallel": True, "gpus": 400}, (399,)),
)


def seed_jobs() -> list[tuple[str, Any, tuple[int, ...]]]:
    """(config name, spec, ranks) of every seed layout measured by `soraplan validate --scale 6b`."""
    from soraplan.planner.config import build_spec

    out = []
    for flags, ranks in SEED_LAYOUTS:
        spec = build_spec(flags={"gpus": WORLD, **flags})
        sp = " + SP" if flags["sequence_parallel"] else ""
        cp = f"·cp{flags['cp']} {flags['cp_comm']}" if flags["cp"] > 1 else ""
        name = f"soraplan-6B tp{flags['tp']}{cp}{sp} (fake process group, world {spec.parallel.gpus}, meta)"
        out.append((name, spec, ranks))
    for flags, ranks in STAGE_LAYOUTS:
        spec = build_spec(flags=flags)
        vpp = f"·vpp{flags['vpp']}" if flags.get("vpp", 1) > 1 else ""
        sp = " + SP" if flags["sequence_parallel"] else ""
        name = (f"soraplan-6B tp{flags['tp']}·pp{flags['pp']}{vpp}·cp{flags['cp']}{sp} first and last stage "
                f"(fake process group, world {flags['gpus']}, meta)")
        out.append((name, spec, ranks))
    return out


def plan_jobs() -> list[tuple[str, Any, tuple[int, ...]]]:
    """(config name, spec, ranks) of the plan's layouts at their own GPU counts (`PLAN_LAYOUTS`): built and
    one optimizer step on meta, no forward."""
    from soraplan.planner.config import build_spec

    out = []
    for flags, ranks in PLAN_LAYOUTS:
        spec = build_spec(flags=flags)
        p = spec.parallel
        sp = " + SP" if p.sequence_parallel else ""
        pp = (f"·pp{p.pp}" if p.pp > 1 else "") + (f"·vpp{p.vpp}" if p.vpp > 1 else "")
        cp = f"·cp{p.cp}" if p.cp > 1 else ""
        comm = f" {p.cp_comm}" if p.cp > 1 else ""
        out.append((f"soraplan-6B tp{p.tp}{pp}{cp}·dp{p.dp_size}{comm}{sp}, optimizer step (fake process "
                    f"group, world {p.gpus}, meta)", spec, ranks))
    return out


def stage_params(spec, stage: int) -> int:
    """The planner's parameters of one pipeline stage's GPU (`params.param_groups` by placement: the blocks
    split evenly, `every` on each stage, `first` / `last` on the first / last); `params_per_gpu` is the
    larger of the first and the last."""
    from soraplan.planner.params import param_groups

    p = spec.parallel
    total = 0
    for g in param_groups(spec):
        n = g.per_rank(p.tp)
        total += {"blocks": n // p.pp, "every": n, "first": n if stage == 0 else 0,
                  "last": n if stage == p.pp - 1 else 0}[g.placement]
    return total


def run_fake(jobs: list[tuple], timeout_s: float = 900.0) -> list[dict[str, Any]]:
    """Measure every (spec, rank) or (spec, rank, optimizer_only) job in one subprocess under the fake
    backend; one result dict per job. Raises RuntimeError with the log's tail when the subprocess fails."""
    with tempfile.TemporaryDirectory(prefix="soraplan-fake-") as tmp:
        jobs_path, out_path, log_path = Path(tmp) / "jobs.json", Path(tmp) / "out.json", Path(tmp) / "log.txt"
        jobs_path.write_text(json.dumps([{"spec": j[0].model_dump(mode="json"), "rank": j[1],
                                               "optimizer_only": bool(j[2:] and j[2])} for j in jobs]))
        with open(log_path, "w") as log:
            try:
                rc = subprocess.run([sys.executable, "-m", "soraplan.validation.measure_fake", str(jobs_path),
                                     str(out_path)], stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s).returncode
            except subprocess.TimeoutExpired:
                rc = -9
        if rc != 0:
            raise RuntimeError(f"fake process group measurement failed (exit {rc}):\n{log_path.read_text()[-2000:]}")
        return json.loads(out_path.read_text())


def fake_rows(config: str, spec, results: list[dict[str, Any]]) -> list:
    """Rows of one layout: `tp_rows`' parameters, saved bytes and communication bytes per rank, plus the
    weight bytes, the optimizer rows (`_optimizer_rows`, exact) and the collective shape check."""
    from dataclasses import replace

    from soraplan.planner.memory import memory_constants
    from soraplan.planner.params import params_per_gpu

    from .measure_compare import Row, layout_of, tp_rows

    c = memory_constants(spec)
    lay = layout_of(spec)
    rows = []
    for r in results:
        rank = r["rank"]
        n = params_per_gpu(spec) if spec.parallel.pp == 1 else stage_params(spec, r["stage"])
        if "saved_blocks" in r:
            rows += tp_rows(config, spec, [r])
        else:
            stage = f" (stage {r['stage']} of {spec.parallel.pp})" if spec.parallel.pp > 1 else ""
            rows.append(Row(config, f"rank {rank} params{stage}", r["params"], n, 0, "params", lay, rank))
        if "stage_saved_blocks" in r:
            rows += _first_stage_rows(config, spec, r, lay)
        rows.append(Row(config, f"rank {rank} weight bytes", r["weight_bytes"], n * c.param_bytes, 0, "B", lay, rank))
        rows += _optimizer_rows(config, spec, r, n, lay)
        if "collectives" in r:
            rows.append(Row(config, f"rank {rank} collectives with inconsistent shapes (of {r['collectives']})",
                            len(r["shape_errors"]), 0, 0, "calls", lay, rank))
    if spec.parallel.pp > 1 and len(results) > 1:   # the most loaded stage is what the planner prints
        rows.append(Row(config, "most loaded stage params", max(r["params"] for r in results), params_per_gpu(spec),
                        0, "params", lay, None))
    return [replace(x, layout=lay) for x in rows]


def _optimizer_rows(config: str, spec, r: dict[str, Any], n: int, lay: dict[str, Any]) -> list:
    """The trainer's optimizer on this rank (`n` parameters) against the planner, exact: the state bytes
    (`memory(spec).optimizer`; a pipeline stage: `memory_terms` at the stage's parameters), the shard
    (`optimizer_shard`), the padded flat parameter and gradient buffers (`weights`, `grads`) and the
    optimizer step's communication per kind and group (`dp_comm_bytes`; nothing outside DP-CP expected)."""
    from soraplan.planner.comm import dp_comm_bytes
    from soraplan.planner.memory import memory, memory_constants, memory_terms, optimizer_shard
    from soraplan.planner.scalar_ops import ScalarOps

    from .measure_compare import Row

    p, rank = spec.parallel, r["rank"]
    terms = memory_terms(ScalarOps, memory_constants(spec), n, p.dp_size, p.cp, p.distributed_optimizer, 0)
    if p.pp == 1:
        terms["optimizer"] = memory(spec).optimizer
    g = p.dp_size * p.cp if p.distributed_optimizer else 1
    how = f"distributed optimizer, shard over dp·cp = {g}" if r["sharded"] else "replicated AdamW"
    rows = [
        Row(config, f"rank {rank} optimizer state bytes ({how}; read from its state after one step)",
            r["optimizer_bytes"], terms["optimizer"], 0, "B", lay, rank),
        Row(config, f"rank {rank} optimizer shard (parameters)", r["optimizer_shard"],
            optimizer_shard(ScalarOps, n, p.dp_size, p.cp, p.distributed_optimizer), 0, "params", lay, rank),
    ]
    if r["sharded"]:
        rows += [Row(config, f"rank {rank} flat parameter buffer bytes (padded)", r["param_buffer_bytes"],
                     terms["weights"], 0, "B", lay, rank),
                 Row(config, f"rank {rank} flat gradient buffer bytes (padded, main grads)", r["grad_buffer_bytes"],
                     terms["grads"], 0, "B", lay, rank)]
    predicted, step = dp_comm_bytes(spec, n), r["comm_step"]
    rows += [Row(config, f"comm bytes {key}" + ("" if key.endswith(" DP-CP") else ", optimizer step"), step.get(key, 0),
                 predicted.get(key, 0), 0, "B", lay, rank) for key in sorted(set(predicted) | set(step))]
    rows.append(Row(config, f"rank {rank} optimizer step collectives with inconsistent shapes (of "
                            f"{r['step_collectives']})", len(r["step_shape_errors"]), 0, 0, "calls", lay, rank))
    return rows


def _first_stage_rows(config: str, spec, r: dict[str, Any], lay: dict[str, Any]) -> list:
    """The first pipeline stage's saved bytes of one micro-batch against `stage_activations`' per_microbatch:
    the transformer block checked (1 %); the whole micro-batch reported only, since the planner also counts
    the last stage's final layer and loss (whole-sequence tensors under CP) on the first stage."""
    from soraplan.planner.activations import stage_activations

    from .measure_compare import ACTIVATION_TOL, Row, _outside_bytes

    predicted = stage_activations(spec)["per_microbatch"]
    rank = r["rank"]
    return [
        Row(config, f"rank {rank} saved bytes, transformer block (first stage, one micro-batch)",
            r["stage_saved_blocks"], predicted - _outside_bytes(spec), ACTIVATION_TOL, "B", lay, rank),
        Row(config, f"rank {rank} saved bytes, whole micro-batch (first stage; reported: the planner adds the last "
                    "stage's final layer and loss)", r["stage_saved_blocks"] + r["stage_saved_outside"], predicted,
            None, "B", lay, rank),
    ]


def run_seed(progress=lambda s: None) -> tuple[list, list[dict]]:
    """`soraplan validate --scale 6b`: (rows, errors) of every seed layout and the plan's layouts."""
    jobs = [(*j, False) for j in seed_jobs()] + [(*j, True) for j in plan_jobs()]
    progress(f"the 6B at {len(jobs)} layouts under a fake process group")
    flat = [(spec, rank, only) for _, spec, ranks, only in jobs for rank in ranks]
    try:
        results = run_fake(flat)
    except Exception as e:  # noqa: BLE001 - reported as a failed case
        return [], [{"config": "soraplan-6B (fake process group)", "error": f"{type(e).__name__}: {e}"}]
    rows, i = [], 0
    for name, spec, ranks, _ in jobs:
        rows += fake_rows(name, spec, results[i:i + len(ranks)])
        i += len(ranks)
    return rows, []


# ------------------------------------------------------------------------------------------ the subprocess
def _meta_collective_buffers() -> None:
    """Megatron allocates collective outputs on `torch.cuda.current_device()` and in its global memory
    buffer (the CPU shims answer "cpu"): on meta they must be meta tensors too."""
    import torch
    import megatron.core.utils as mutils

    torch.cuda.current_device = lambda: "meta"  # type: ignore[assignment]

    def get_tensor(self, tensor_shape, dtype, name, mem_alloc_context=None):
        return torch.empty(*tensor_shape, dtype=dtype, device="meta")

    mutils.GlobalMemoryBuffer.get_tensor = get_tensor


def _init_fake(spec, rank: int) -> None:
    """torch.distributed under the fake backend as `rank` of spec.parallel.gpus, and parallel_state."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps
    from torch.testing._internal.distributed.fake_pg import FakeStore

    from soraplan.models import parallel
    from soraplan.models.shims import apply_cpu_shims, cuda_absent

    parallel.destroy()
    if cuda_absent():
        apply_cpu_shims()
    _meta_collective_buffers()
    p = spec.parallel
    dist.init_process_group("fake", store=FakeStore(), rank=rank, world_size=p.gpus)
    ps.initialize_model_parallel(tensor_model_parallel_size=p.tp, pipeline_model_parallel_size=p.pp,
                                 virtual_pipeline_model_parallel_size=p.vpp if p.vpp > 1 else None,
                                 context_parallel_size=p.cp, create_gloo_process_groups=False)
    parallel._LAYOUT = (p.tp, p.pp, p.cp, p.vpp)   # build_model's initialize() finds this layout in place
    parallel._default_rng_streams()


class _ShapeCheck:
    """A dispatch mode that checks the shape relations of every c10d op (see the module docstring)."""

    def __init__(self) -> None:
        self.calls = 0
        self.errors: list[str] = []
        self.sent: list[tuple[int, ...]] = []
        self.received: list[tuple[int, ...]] = []

    def mode(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        check = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                if func.namespace == "c10d":
                    check.op(func.__name__.split(".")[0], args)
                return func(*args, **(kwargs or {}))

        return Mode()

    def op(self, name: str, args: tuple) -> None:
        import torch
        import torch.distributed as dist

        self.calls += 1
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        for a in args:
            if isinstance(a, (list, tuple)):
                tensors += [x for x in a if isinstance(x, torch.Tensor)]
        if any(t.device.type != "meta" for t in tensors):
            self.errors.append(f"{name}: a buffer off the meta device")

        def size() -> int:
            return dist.ProcessGroup.unbox(args[2]).size()

        if name == "_allgather_base_":
            out, inp = args[0], args[1]
            if tuple(out.shape) != (inp.shape[0] * size(), *inp.shape[1:]):
                self.errors.append(f"all-gather {tuple(inp.shape)} -> {tuple(out.shape)}")
        elif name == "_reduce_scatter_base_":
            out, inp = args[0], args[1]
            if tuple(inp.shape) != (out.shape[0] * size(), *out.shape[1:]):
                self.errors.append(f"reduce-scatter {tuple(inp.shape)} -> {tuple(out.shape)}")
        elif name == "alltoall_base_":
            if tuple(args[0].shape) != tuple(args[1].shape):
                self.errors.append(f"all-to-all {tuple(args[1].shape)} -> {tuple(args[0].shape)}")
        elif name == "send":
            self.sent += [tuple(t.shape) for t in args[0]]
        elif name == "recv_":
            self.received += [tuple(t.shape) for t in args[0]]

    def finish(self) -> list[str]:
        if sorted(self.sent) != sorted(self.received):
            self.errors.append(f"point-to-point: {len(self.sent)} sends and {len(self.received)} receives of "
                               "different shapes")
        return self.errors


def _measure(spec, rank: int, optimizer_only: bool = False) -> dict[str, Any]:
    import torch
    from megatron.core import parallel_state as ps

    from soraplan.models.build import build_model
    from soraplan.models.loss import diffusion_inputs, model_kwargs, synthetic_batch, training_loss

    from .comm_count import comm_table, count_comm
    from .measure import flash_on_meta, record_saved
    from .measure_run import block_roots

    _init_fake(spec, rank)
    model = build_model(spec, device="meta", seed=None)
    model.train()
    params = list(model.parameters())
    out = {"rank": torch.distributed.get_rank(), "stage": ps.get_pipeline_model_parallel_rank(),
           "params": sum(p.numel() for p in params), "weight_bytes": sum(p.numel() * p.element_size() for p in params)}
    if optimizer_only:
        return {**out, **_optimizer_step(model, spec)}
    g = torch.Generator().manual_seed(0)
    batch = synthetic_batch(spec, spec.parallel.micro_batch, "meta", g)
    shapes = _ShapeCheck()
    if spec.parallel.pp > 1:
        # other stages, and every rank of an interleaved layout (its chunks run under the vpp schedule, not
        # one forward): built, counted and the optimizer stepped
        if not ps.is_pipeline_first_stage() or spec.parallel.vpp > 1:
            return {**out, **_optimizer_step(model, spec)}
        # the first stage's forward of one micro-batch, and its backward from the next stage's gradient
        x_t, timesteps, _ = diffusion_inputs(batch, "flow", g)
        with flash_on_meta(), shapes.mode():
            with record_saved(model) as saved:
                hidden = model(x_t, timesteps, **model_kwargs(batch))
            hidden.backward(torch.empty_like(hidden))
        in_blocks = sum(saved.under(r) for r in block_roots(model))
        return {**out, "stage_saved_blocks": in_blocks, "stage_saved_outside": saved.total - in_blocks,
                "collectives": shapes.calls, "shape_errors": shapes.finish(), **_optimizer_step(model, spec)}
    with flash_on_meta(), shapes.mode(), count_comm() as comm:
        with record_saved(model) as saved:
            loss = training_loss(model, batch, generator=g)
        loss.backward()
    in_blocks = sum(saved.under(r) for r in block_roots(model))
    return {**out, "saved_blocks": in_blocks, "saved_outside": saved.total - in_blocks, "comm": comm_table(comm),
            "collectives": shapes.calls, "shape_errors": shapes.finish(), **_optimizer_step(model, spec)}


def _optimizer_step(model, spec) -> dict[str, Any]:
    """The trainer's optimizer (`models.zero.build_optimizer`) for this rank's module, built after the
    backward (nothing on meta depends on the order) and stepped once under the communication counter and
    the shape check: its state bytes (`zero.state_bytes`, AdamW's scalar step counter aside), its shard, its
    flat buffers and the step's bytes per kind and group."""
    from soraplan.models.zero import build_optimizer, state_bytes

    from .comm_count import comm_table, count_comm

    optimizer, sharded = build_optimizer(model, spec, lr=1e-4)
    shapes = _ShapeCheck()
    with shapes.mode(), count_comm() as comm:
        optimizer.step()
    n = sum(p.numel() for p in model.parameters())
    buffers = {"param_buffer_bytes": optimizer.param_buffer.numel() * optimizer.param_buffer.element_size(),
               "grad_buffer_bytes": optimizer.grad_buffer.numel() * optimizer.grad_buffer.element_size()} if sharded else {}
    return {"sharded": sharded, "optimizer_bytes": state_bytes(optimizer),
            "optimizer_shard": optimizer.shard if sharded else n, **buffers, "comm_step": comm_table(comm),
            "step_collectives": shapes.calls, "step_shape_errors": shapes.finish()}


def _worker(jobs_path: str, out_path: str) -> None:
    from soraplan.models.quiet import quiet_megatron

    quiet_megatron()
    from soraplan.models.parallel import destroy
    from soraplan.planner.spec import Spec

    results = []
    for job in json.loads(Path(jobs_path).read_text()):
        results.append(_measure(Spec.model_validate(job["spec"]), int(job["rank"]), bool(job.get("optimizer_only"))))
    destroy()
    tmp = Path(out_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(results))
    tmp.rename(out_path)


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
