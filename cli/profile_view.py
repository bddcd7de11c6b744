"""The tables of `soraplan profile`: measured parameters, FLOPs and saved activations, and the DiT comparison."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from soraplan.planner.estimate import human

from .common import markup_literal
from .table_view import Grid, console, kv


def render(r: dict[str, Any], console_: Console | None = None) -> None:
    """Print one `soraplan profile` result (the `--json` object)."""
    c = console_ or console()
    c.print(f"[bold]{markup_literal(r.get('title', r['module']))}[/]  inputs {markup_literal(r['inputs'])}  dtype {r['dtype']}",
            highlight=False)
    c.print(kv("Measured on the meta device (FlopCounterMode; 1 MAC = 2 FLOPs)", [
        ("parameters", f"{r['params']:,} ({human(r['params'])})"),
        ("forward FLOPs", human(r["flops"]["forward"])),
        ("forward + backward FLOPs", human(r["flops"]["train"])),
        ("saved activations (per micro-batch)", f"{r['saved_activation_gib']:.2f} GiB in {r['saved_tensors']:,} tensors"),
    ]))
    if r.get("compare"):
        t = Grid(f"Same clip ({r['frames']} frames at {r['res']}^2) in the planner's DiTs", "model", ">params",
                 ">tokens", ">forward FLOPs", ">train FLOPs", ">UNet / DiT forward")
        t.add_row(r["preset"], human(r["params"]), "-", human(r["flops"]["forward"]), human(r["flops"]["train"]), "1.00")
        for row in r["compare"]:
            t.add_row(row["model"], human(row["params"]), f"{row['tokens']:,}", human(row["forward_flops"]),
                      human(row["train_flops"]), f"{row['unet_over_dit_forward']:.2f}")
        c.print(t)
