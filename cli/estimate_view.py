"""Rich tables for `soraplan estimate`: readable in ten seconds, with the "200-400 GPUs for 2-3 months" comparison visible.

Every table is a `table_view.Grid`: it wraps to the terminal and turns vertical when its columns cannot fit,
so no number or name is ever cut.
"""

from rich.console import Console

from soraplan.planner.estimate import human
from soraplan.planner.results import Estimate

from .table_view import Grid, console, kv
from .common import markup_literal


def render(r: Estimate, console_: Console | None = None) -> None:
    c = console_ or console()
    spec = r.spec
    par = spec.parallel
    c.print(f"[bold]{markup_literal(r.name)}[/] on [bold]{markup_literal(r.hardware.name)}[/]  tp={par.tp} pp={par.pp} cp={par.cp} dp={par.dp} "
            f"(world {par.gpus})  micro-batch {par.micro_batch}  recompute {par.recompute}  "
            f"attention {spec.model.attention} ({spec.kernels.attention_kernel})")
    c.print(f"Sequence: {r.sequence['text']}")

    t = Grid("Parameters", "group", ">params")
    for g, n in r.params.groups.items():
        t.add_row(g, f"{n:,}")
    t.add_row("[bold]total[/]", f"[bold]{r.params.total:,}[/] ({human(r.params.total)})")
    t.add_row("per GPU (most loaded stage)", f"{r.params.per_gpu:,}")
    c.print(t)

    f = r.flops
    t = Grid("FLOPs per sample", "quantity", ">FLOPs")
    for k, v in f.forward_by_part.items():
        t.add_row(f"forward: {k}", human(v))
    t.add_row("[bold]forward[/]", human(f.forward_per_sample))
    t.add_row("training (3 x forward)", human(f.train_per_sample))
    t.add_row("hardware (with recompute)", human(f.hardware_per_sample))
    c.print(t)

    m = r.memory_gib
    c.print(kv("Memory per GPU (GiB)", [
        ("weights", f"{m.weights:.1f}"), ("grads", f"{m.grads:.1f}"), ("optimizer", f"{m.optimizer:.1f}"),
        ("activations", f"{m.activations:.1f}"), ("buffers", f"{m.buffers:.1f}"), ("[bold]total[/]", f"[bold]{m.total:.1f}[/]"),
        ("capacity", f"{m.capacity:.1f}"), ("fits", "[green]yes[/]" if m.fits else "[red]no[/]")], "component", ">GiB"))

    s = r.step
    terms = s.terms
    t = Grid("Step (every term)", "term", ">seconds", "note")
    rows = [
        ("compute: GEMM", "gemm_s", f"at {terms.get('gemm_efficiency', terms['efficiency']):.0%} of peak"),
        ("compute: attention", "attention_s", f"at {terms.get('attention_efficiency', terms['efficiency']):.0%} of peak"),
        ("compute: elementwise", "elementwise_s", "bytes / HBM bandwidth"),
        ("compute: recompute", "recompute_s", "recomputed forward"),
        ("TP communication", "tp_comm_s", "over node" if terms.get("tp_over_node") else "NVLink"),
        ("CP communication (exposed)", "cp_comm_s", f"of {terms.get('cp_comm_total_s', 0):.3f} s"),
        ("DP communication (exposed)", "dp_comm_s", f"of {terms.get('dp_comm_total_s', 0):.3f} s"),
        ("pipeline bubble", "pp_bubble_s", "(p-1)/(v*m)"),
        ("pipeline p2p", "pp_p2p_s", ""),
        ("optimizer", "optimizer_s", "Adam state / HBM bandwidth"),
        ("overheads", "overhead_s", "launch gaps, stragglers (fitted: soraplan backtest)"),
    ]
    for label, key, note in rows:
        if key in terms:
            t.add_row(label, f"{terms[key]:.3f}", note)
    t.add_row("[bold]step[/]", f"[bold]{s.time_s:.3f}[/]", f"{terms['samples_per_step']} samples per step")
    t.add_row("samples/s", f"{s.samples_per_s:.3f}", "")
    t.add_row("MFU", f"{s.mfu:.1%}", str(terms.get("efficiency_source", "")))
    c.print(t)

    tr = r.train
    c.print(f"[bold]Time to train[/] {tr.samples:,.0f} samples on {tr.gpus} GPUs: {tr.days:.1f} days, "
            f"{tr.gpu_hours:,.0f} GPU-hours, ${tr.cost_usd:,.0f} at ${tr.usd_per_gpu_hour:.2f}/GPU-hour")

    if r.gpu_counts:
        t = Grid("Days by GPU count (seed: '200-400 A100 for 2-3 months')",
                 ">GPUs", ">days", ">GPU-hours", ">cost $", ">epochs in 60 d", ">epochs in 90 d")
        for row in r.gpu_counts:
            t.add_row(str(row["gpus"]), f"{row['days']:.1f}", f"{row['gpu_hours']:,.0f}", f"{row['cost_usd']:,.0f}",
                      f"{row['epochs_in_60_days']:.1f}", f"{row['epochs_in_90_days']:.1f}")
        c.print(t)
    if r.seed_claim:
        c.print(f"[bold]Seed check[/] {r.seed_claim.text}")
    if r.attention_comparison:
        t = Grid("Attention: full vs window vs spatial-temporal", "attention", ">forward FLOPs", ">self attn core",
                 ">activ. GiB", ">total GiB", ">fits", ">step s", ">days")
        for row in r.attention_comparison:
            t.add_row(str(row["attention"]), human(row["forward_flops"]), human(row["self_attn_core_flops"]),
                      f"{row['activations_gib']:.1f}", f"{row['memory_total_gib']:.1f}", "yes" if row["fits"] else "no",
                      f"{row['step_s']:.2f}", f"{row['days']:.1f}")
        c.print(t)
