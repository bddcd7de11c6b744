"""Rich tables for `soraplan plan` (a pure renderer of the typed Plan; no numbers are computed here).

Every table is a `table_view.Grid` (wraps, turns vertical when its columns cannot fit); the winner's memory
sum is a line of its own under the step-terms table.
"""

from __future__ import annotations

from rich.console import Console

from soraplan.planner.results import Budget, CountSearch, Plan

from .table_view import Grid, console
from .common import markup_literal

TERMS = (("gemm_s", "GEMM"), ("attention_s", "attention"), ("elementwise_s", "elementwise"),
         ("recompute_s", "  (of which recompute)"), ("compute_s", "compute"), ("tp_comm_s", "TP comm"),
         ("cp_comm_s", "CP ring (exposed)"), ("cp_comm_total_s", "  (CP ring before overlap)"),
         ("dp_comm_s", "DP sync (exposed)"), ("dp_comm_total_s", "  (DP sync before overlap)"),
         ("pp_bubble_s", "PP bubble"), ("pp_p2p_s", "PP p2p"), ("optimizer_s", "optimizer"), ("time_s", "step"))


def ranked_table(c: CountSearch, gpu: str) -> Grid:
    from soraplan.planner.rank import format_layout

    rej = ", ".join(f"{k.replace('_', '-')} {v:,}" for k, v in c.rejected.items() if v)
    t = Grid(f"{c.gpus} x {gpu}: {c.evaluated:,} layouts, {c.feasible:,} fit (rejected: {rej or 'none'})",
             ">#", "layout", ">GiB", ">step s", ">MFU", ">days", ">GPU-h", ">cost $")
    for i, e in enumerate(c.ranked, 1):
        used = "" if e.gpus_used == c.gpus else f" ({e.gpus_used} used)"
        t.add_row(str(i), format_layout(e) + used, f"{e.memory_gib.total:.1f}", f"{e.step.time_s:.2f}",
                  f"{e.step.mfu:.1%}", f"{e.train.days:.1f}", f"{e.train.gpu_hours:,.0f}",
                  f"{e.train.cost_usd:,.0f}")
    return t


def terms_table(c: CountSearch) -> Grid:
    win = c.ranked[0]
    run = c.ranked[1] if len(c.ranked) > 1 else None
    t = Grid(f"Step terms, {c.gpus} GPUs (seconds per step; per sample in brackets)", "term", ">winner",
             *([">runner-up"] if run else []))
    for key, label in TERMS:
        w = win.step.term(key)
        row = [label, f"{w:.3f} [{w / win.global_batch * 1e3:.2f} ms]"]
        if run:
            v = run.step.term(key)
            row.append(f"{v:.3f} [{v / run.global_batch * 1e3:.2f} ms]")
        t.add_row(*row)
    return t


def memory_line(c: CountSearch) -> str:
    """The winner's memory per GPU as a sum (and the runner-up's total), one line that wraps."""
    m = c.ranked[0].memory_gib
    line = (f"[bold]Memory per GPU, winner:[/bold] weights {m.weights:.1f} + grads {m.grads:.1f} + optimizer "
            f"{m.optimizer:.1f} + activations {m.activations:.1f} + buffers {m.buffers:.1f} = {m.total:.1f} GiB")
    if len(c.ranked) > 1:
        line += f"; runner-up {c.ranked[1].memory_gib.total:.1f} GiB"
    return line


def render(r: Plan, console_: Console | None = None) -> None:
    con = console_ or console()
    spec = r.spec
    gpu = spec.hardware.custom.name if spec.hardware.custom else spec.hardware.gpu
    s = r.search
    e = s.efficiency
    con.print(f"[bold]{markup_literal(spec.name)}[/bold] plan on {markup_literal(gpu)}: objective {r.objective}, {s.samples:,.0f} samples, "
              f"headroom {s.headroom:.0%}, max TP in node {s.max_tp_in_node}, global batch "
              f"{s.global_batch_range[0]}-{s.global_batch_range[1]}, attention {', '.join(s.attentions)}")
    con.print(f"Efficiencies: GEMM {e['gemm']:.2f}, attention {e['attention']:.2f}, HBM {e['hbm']:.2f}, "
              f"network {e['comm']:.2f} ({e['source']})")
    for c in r.gpu_counts:
        if not c.ranked:
            con.print(f"[bold red]{c.gpus} GPUs:[/bold red] {c.message}")
            continue
        con.print(ranked_table(c, gpu))
        con.print(terms_table(c))
        con.print(memory_line(c))
        con.print(f"[bold]Why:[/bold] {c.why_best}")
        con.print()
    if r.best:
        b = r.best
        con.print(f"[bold green]Best ({r.best_reason}):[/bold green] {b.gpus} GPUs, tp={b.tp} pp={b.pp} "
                  f"vpp={b.vpp} cp={b.cp} dp={b.dp} micro-batch {b.micro_batch} global batch {b.global_batch}, "
                  f"recompute {b.recompute}: {b.train.days:.1f} days, {b.train.gpu_hours:,.0f} GPU-hours, "
                  f"${b.train.cost_usd:,.0f}, MFU {b.step.mfu:.1%}")
    else:
        con.print(f"[bold red]{r.best_reason}[/bold red]")
    if r.budget:
        render_budget(r.budget, con)
    if r.sensitivity:
        t = Grid("Sensitivity (one assumption at a time, best layout re-searched)", "assumption", "base", "low",
                 "high", ">days low", ">days high")
        for x in r.sensitivity:
            t.add_row(x.assumption, str(x.base), str(x.low), str(x.high),
                      "-" if x.days_low is None else f"{x.days_low:.1f}",
                      "-" if x.days_high is None else f"{x.days_high:.1f}")
        con.print(t)
    if r.budget and r.budget.statement:
        con.print(f"[bold]In short:[/bold] {r.budget.statement}")


def render_budget(b: Budget, con: Console) -> None:
    if b.curriculum:
        counts = [t.gpus for t in b.totals]
        t = Grid("Curriculum: each stage on its own best layout (days; layout)", "stage", ">tokens", ">samples",
                 *[f">{n} GPUs" for n in counts], ">read MB/s/GPU latent|raw")
        for st in b.stages:
            cells = []
            for row in st.per_gpus:
                if not row.feasible:
                    cells.append("does not fit")
                    continue
                short = " ".join(x for x in (row.layout or "").split() if x.split("=")[0] in ("tp", "pp", "cp", "mb"))
                cells.append(f"{row.days:.1f} d\n{short}")
            rates = [r for r in st.per_gpus if r.feasible]
            rate = (f"{max(r.read_mb_s_per_gpu_latent or 0.0 for r in rates):.2f}|"
                    f"{max(r.read_mb_s_per_gpu_raw or 0.0 for r in rates):.2f}" if rates else "-")
            t.add_row(f"{markup_literal(st.name)}\n{markup_literal(st.geometry)}", f"{st.sequence_length:,}", f"{st.samples / 1e6:,.4g} M", *cells, rate)
        tot = ["total", "", ""] + [f"{x.days:.1f} d" if x.feasible else "-" for x in b.totals] + [""]
        t.add_row(*tot)
        con.print(t)
        t = Grid("Curriculum totals", ">GPUs", ">days", ">GPU-hours", ">cost $")
        for tot_row in b.totals:
            if tot_row.feasible:
                t.add_row(str(tot_row.gpus), f"{tot_row.days:.1f}", f"{tot_row.gpu_hours:,.0f}", f"{tot_row.cost_usd:,.0f}")
            else:
                t.add_row(str(tot_row.gpus), "a stage does not fit", "-", "-")
        con.print(t)
    else:
        st = b.stages[0]
        io = st.storage
        rates_txt = [f"{row.gpus} GPUs: {row.read_mb_s_per_gpu_latent:.2f} MB/s latents, "
                     f"{row.read_mb_s_per_gpu_raw:.2f} MB/s raw" for row in st.per_gpus if row.feasible]
        con.print(f"Storage per sample: latents {io['latent_bytes'] / 1e6:.2f} MB, raw {io['raw_bytes'] / 1e6:.2f} MB "
                  f"({io['raw_source']}); read per GPU: " + "; ".join(rates_txt))
    t = Grid(f"Passes over {b.pass_samples:,} samples in 2-3 months", ">GPUs", ">days per pass", ">passes in 60 d",
             ">passes in 90 d", ">MFU")
    for p in b.passes:
        if p.feasible:
            t.add_row(str(p.gpus), f"{p.days_per_pass:.1f}", f"{p.passes_in_60_days:.1f}",
                      f"{p.passes_in_90_days:.1f}", f"{p.mfu:.0%}")
        else:
            t.add_row(str(p.gpus), "does not fit", "-", "-", "-")
    con.print(t)
