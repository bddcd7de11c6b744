"""Rich tables for `soraplan estimate`: readable in ten seconds, with the "200-400 GPUs for 2-3 months" comparison visible."""

from rich.console import Console
from rich.table import Table

from soraplan.planner.estimate import human
from soraplan.planner.results import Estimate

from .common import markup_literal


def _t(title: str) -> Table:
    t = Table(title=title, title_justify="left", show_header=True, header_style="bold")
    return t


def render(r: Estimate, console: Console | None = None) -> None:
    c = console or Console()
    spec = r.spec
    par = spec.parallel
    c.print(f"[bold]{markup_literal(r.name)}[/] on [bold]{markup_literal(r.hardware.name)}[/]  tp={par.tp} pp={par.pp} cp={par.cp} dp={par.dp} "
            f"(world {par.gpus})  micro-batch {par.micro_batch}  recompute {par.recompute}  "
            f"attention {spec.model.attention} ({spec.kernels.attention_kernel})")
    c.print(f"Sequence: {r.sequence['text']}")

    t = _t("Parameters")
    t.add_column("group"); t.add_column("params", justify="right")
    for g, n in r.params.groups.items():
        t.add_row(g, f"{n:,}")
    t.add_row("[bold]total[/]", f"[bold]{r.params.total:,}[/] ({human(r.params.total)})")
    t.add_row("per GPU (most loaded stage)", f"{r.params.per_gpu:,}")
    c.print(t)

    f = r.flops
    t = _t("FLOPs per sample")
    t.add_column("quantity"); t.add_column("FLOPs", justify="right")
    for k, v in f.forward_by_part.items():
        t.add_row(f"forward: {k}", human(v))
    t.add_row("[bold]forward[/]", human(f.forward_per_sample))
    t.add_row("training (3 x forward)", human(f.train_per_sample))
    t.add_row("hardware (with recompute)", human(f.hardware_per_sample))
    c.print(t)

    m = r.memory_gib
    t = _t("Memory per GPU (GiB)")
    for k in ("weights", "grads", "optimizer", "activations", "buffers", "total", "capacity"):
        t.add_column(k, justify="right")
    t.add_column("fits")
    t.add_row(*(f"{v:.1f}" for v in (m.weights, m.grads, m.optimizer, m.activations, m.buffers, m.total, m.capacity)),
              "[green]yes[/]" if m.fits else "[red]no[/]")
    c.print(t)

    s = r.step
    terms = s.terms
    t = _t("Step (every term)")
    t.add_column("term"); t.add_column("seconds", justify="right"); t.add_column("note")
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
        t = _t("Days by GPU count (seed: '200-400 A100 for 2-3 months')")
        for col in ("GPUs", "days", "GPU-hours", "cost $", "epochs in 60 d", "epochs in 90 d"):
            t.add_column(col, justify="right")
        for row in r.gpu_counts:
            t.add_row(str(row["gpus"]), f"{row['days']:.1f}", f"{row['gpu_hours']:,.0f}", f"{row['cost_usd']:,.0f}",
                      f"{row['epochs_in_60_days']:.1f}", f"{row['epochs_in_90_days']:.1f}")
        c.print(t)
    if r.seed_claim:
        c.print(f"[bold]Seed check[/] {r.seed_claim.text}")
    if r.attention_comparison:
        t = _t("Attention: full vs window vs spatial-temporal")
        for col in ("attention", "forward FLOPs", "self-attn core", "activations GiB", "total GiB", "fits", "step s", "days"):
            t.add_column(col, justify="right")
        for row in r.attention_comparison:
            t.add_row(str(row["attention"]), human(row["forward_flops"]), human(row["self_attn_core_flops"]),
                      f"{row['activations_gib']:.1f}", f"{row['memory_total_gib']:.1f}", "yes" if row["fits"] else "no",
                      f"{row['step_s']:.2f}", f"{row['days']:.1f}")
        c.print(t)
