"""The HTML capacity report: formats `planner.report_data.gather(...)` into one self-contained page.

Pure text building: no planning number is computed here (they all come from the report data: its own rows,
and the plan's typed layouts, budget and sensitivity rows), no file is written.
plotly is imported inside `render_html` only. Every user-provided string is escaped with `esc` for HTML and
with `ptxt` before it goes into a chart (plotly reads a little HTML in its labels); chart JSON is embedded
in `<script type="application/json">` with `<`, `>` and `&` written as \\u escapes, so no string can close
the script element. plotly.js is inlined exactly once, in the page head.
"""

from __future__ import annotations

import html
import json
import string
from datetime import datetime, timezone
from importlib import resources
from typing import Any, TypeGuard

from soraplan.planner.rank import format_layout
from soraplan.planner.report_data import BudgetView, StageAtBest, Validation
from soraplan.planner.results import PassRow, RankedLayout, SensitivityRow

MEM_COLORS = {"weights": "#3b6ea8", "grads": "#7fa7d6", "optimizer": "#e39b3b", "activations": "#cf5c5c",
              "buffers": "#a3a3a3"}
ACCENT, ACCENT2, OK, WARN, BAD = "#1f5fa8", "#d9822b", "#2e8540", "#c77700", "#b3261e"
FONT = "-apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
PP_COLORS = ["#dbe8f6", "#fbe3cc", "#d8efdc", "#f3d6e4", "#e6def5", "#fff2b3", "#d7f0f2", "#eee0d2"]


# ------------------------------------------------------------------------------------------ formatting
def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def ptxt(x: Any) -> str:
    """A user string as plotly label text: plotly renders a few HTML tags, so escape them (it shows entities)."""
    return html.escape(str(x), quote=False)


def f_days(x: float | None) -> str:
    return "—" if x is None else f"{x:,.1f}"


def f_int(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def f_usd(x: float | None) -> str:
    if x is None:
        return "—"
    if abs(x) >= 1e6:
        return f"${x / 1e6:,.2f} M"
    return f"${x:,.0f}"


def f_pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.0%}"


def f_num(x: Any) -> str:
    if isinstance(x, bool) or x is None:
        return esc("—" if x is None else ("yes" if x else "no"))
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if x != 0 and (abs(x) >= 1e7 or abs(x) < 1e-3):
            return f"{x:.4g}"
        return f"{x:,.4g}" if abs(x) < 1e4 else f"{x:,.0f}"
    return esc(x)


def short_layout(e: RankedLayout) -> str:
    """A chart label for a ranked layout: `format_layout(..., "short")`."""
    return format_layout(e, "short")


# -------------------------------------------------------------------------------------------- figures
def _layout(**kw: Any) -> dict[str, Any]:
    base = {"font": {"family": FONT, "size": 13, "color": "#222"}, "paper_bgcolor": "white", "plot_bgcolor": "white",
            "margin": {"l": 70, "r": 30, "t": 50, "b": 60}, "height": 380,
            "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0, "xanchor": "left"},
            "hoverlabel": {"font": {"family": FONT}}}
    base.update(kw)
    return base


def _axis(title: str, **kw: Any) -> dict[str, Any]:
    return dict({"title": {"text": title}, "gridcolor": "#e8e8e8", "zeroline": False, "linecolor": "#999"}, **kw)


def fig_counts(d: dict[str, Any]) -> dict[str, Any] | None:
    rows = [r for r in d["counts"] if r["fits"]]
    if not rows:
        return None
    x = [r["gpus_used"] for r in rows]
    data: list[dict[str, Any]] = [
        {"type": "scatter", "mode": "lines+markers", "name": "wall-clock days", "x": x, "y": [r["days"] for r in rows],
         "line": {"color": ACCENT, "width": 3}, "marker": {"size": 9},
         "hovertemplate": "%{x} GPUs: %{y:.1f} days<extra></extra>"},
        {"type": "scatter", "mode": "lines+markers", "name": "cost (USD)", "x": x, "y": [r["cost_usd"] for r in rows],
         "yaxis": "y2", "line": {"color": ACCENT2, "width": 2, "dash": "dot"}, "marker": {"size": 7},
         "hovertemplate": "%{x} GPUs: $%{y:,.0f}<extra></extra>"},
    ]
    rec = [r for r in rows if r["recommended"]]
    if rec:
        data.append({"type": "scatter", "mode": "markers", "name": "recommended", "x": [rec[0]["gpus_used"]],
                     "y": [rec[0]["days"]], "marker": {"symbol": "star", "size": 22, "color": OK,
                                                       "line": {"color": "white", "width": 1}},
                     "hovertemplate": "recommended: %{x} GPUs, %{y:.1f} days<extra></extra>"})
    shapes, annotations = [], []
    if d["deadline_days"] is not None:
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": d["deadline_days"],
                       "y1": d["deadline_days"], "line": {"color": BAD, "width": 2, "dash": "dash"}})
        annotations.append({"xref": "paper", "x": 0.01, "xanchor": "left", "yref": "y", "y": d["deadline_days"],
                            "yanchor": "bottom", "text": f"deadline {d['deadline_days']:g} days", "showarrow": False,
                            "font": {"color": BAD}})
    if rec:
        annotations.append({"x": rec[0]["gpus_used"], "y": rec[0]["days"], "text": "recommended", "showarrow": True,
                            "arrowhead": 0, "ay": -36, "font": {"color": OK}})
    ymax = max([r["days"] for r in rows] + [d["deadline_days"] or 0]) * 1.2
    return {"data": data, "layout": _layout(
        xaxis=_axis("GPUs", tickvals=x), yaxis=_axis("wall-clock days", range=[0, ymax]),
        yaxis2=_axis("cost (USD)", overlaying="y", side="right", showgrid=False, tickprefix="$",
                     range=[0, max(r["cost_usd"] for r in rows) * 1.35]),
        shapes=shapes, annotations=annotations, margin={"l": 70, "r": 80, "t": 50, "b": 60})}


def fig_memory(d: dict[str, Any]) -> dict[str, Any] | None:
    tops: tuple[RankedLayout, ...] = d["top_layouts"]
    if not tops:
        return None
    labels = [f"#{i + 1} {short_layout(e)}" for i, e in enumerate(tops)]
    data = [{"type": "bar", "name": part, "x": labels, "y": [getattr(e.memory_gib, part) for e in tops],
             "marker": {"color": MEM_COLORS[part]}, "hovertemplate": f"{part}: %{{y:.1f}} GiB<extra></extra>"}
            for part in MEM_COLORS]
    mem0 = tops[0].memory_gib
    cap = mem0.capacity
    top = max(max(e.memory_gib.total for e in tops), cap) * 1.12
    shapes = [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": cap, "y1": cap,
               "line": {"color": BAD, "width": 2, "dash": "dash"}}]
    notes = [{"xref": "paper", "x": 1, "xanchor": "right", "y": cap, "yanchor": "bottom", "showarrow": False,
              "text": f"HBM capacity {cap:g} GiB", "font": {"color": BAD}}]
    usable = mem0.usable
    if isinstance(usable, (int, float)) and usable < cap:
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": usable, "y1": usable,
                       "line": {"color": WARN, "width": 1.5, "dash": "dot"}})
        notes.append({"xref": "paper", "x": 0, "xanchor": "left", "y": usable, "yanchor": "bottom", "showarrow": False,
                      "text": f"usable {usable:.0f} GiB (headroom kept free)", "font": {"color": WARN}})
    notes += [{"x": lab, "y": e.memory_gib.total, "yanchor": "bottom", "showarrow": False,
               "text": f"<b>{e.memory_gib.total:.1f} GiB</b>"} for lab, e in zip(labels, tops)]
    return {"data": data, "layout": _layout(barmode="stack", bargap=0.55 if len(tops) < 3 else 0.35, xaxis=_axis(""),
                                            yaxis=_axis("GiB per GPU", range=[0, top]), shapes=shapes, annotations=notes,
                                            height=440, margin={"l": 70, "r": 30, "t": 50, "b": 40})}


STEP_COLORS = {"gemm_s": "#1f5fa8", "attention_s": "#5fa2dd", "elementwise_s": "#b3d3ee", "tp_comm_s": "#e39b3b",
               "cp_comm_s": "#f5c983", "dp_comm_s": "#cf5c5c", "pp_bubble_s": "#8c6bb1", "pp_p2p_s": "#c3b1e1",
               "optimizer_s": "#7f7f7f"}


def fig_step(d: dict[str, Any]) -> dict[str, Any] | None:
    """Where each step's time goes, for the top layouts (the plan's step terms)."""
    sb, tops = d.get("step_breakdown") or {}, d["top_layouts"]
    if not tops or not sb.get("terms"):
        return None
    labels = [f"#{i + 1} {short_layout(e)}" for i, e in enumerate(tops)]
    data = [{"type": "bar", "orientation": "h", "name": ptxt(t["label"]), "y": labels,
             "x": [row[t["key"]] for row in sb["layouts"]], "marker": {"color": STEP_COLORS.get(t["key"], "#999")},
             "hovertemplate": f"{ptxt(t['label'])}: %{{x:.2f}} s<extra></extra>"}
            for t in sb["terms"]]
    return {"data": data, "layout": _layout(barmode="stack", height=110 + 46 * len(tops),
                                            legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0,
                                                    "traceorder": "normal"},
                                            xaxis=_axis("seconds per optimizer step", rangemode="tozero"),
                                            yaxis=_axis("", autorange="reversed", automargin=True),
                                            margin={"l": 20, "r": 30, "t": 60, "b": 50})}


def fig_attention(d: dict[str, Any]) -> dict[str, Any] | None:
    rows = d["attention"]
    if len(rows) < 2:
        return None
    names = [ptxt(r["attention"]).replace(":", "<br>").replace("spatial-temporal", "spatial-<br>temporal") for r in rows]
    colors = [ACCENT, ACCENT2, OK, "#7a5195"][: len(rows)]
    panels = [("forward TFLOP per clip", [r["forward_flops"] / 1e12 for r in rows], "%{y:,.0f} TFLOP"),
              ("activation memory, GiB per GPU", [r["activations_gib"] for r in rows], "%{y:.1f} GiB"),
              ("wall-clock days", [r["days"] for r in rows], "%{y:.1f} days")]
    data, layout = [], _layout(showlegend=False, height=340, margin={"l": 60, "r": 20, "t": 40, "b": 70})
    annotations = []
    for i, (title, ys, hover) in enumerate(panels):
        ax = "" if i == 0 else str(i + 1)
        data.append({"type": "bar", "x": names, "y": ys, "xaxis": f"x{ax}", "yaxis": f"y{ax}", "marker": {"color": colors},
                     "hovertemplate": hover + "<extra></extra>", "text": [f"{y:,.3g}" for y in ys], "textposition": "auto"})
        lo, hi = i / 3 + 0.04, (i + 1) / 3 - 0.04
        layout[f"xaxis{ax}"] = _axis("", domain=[lo, hi], anchor=f"y{ax}", tickangle=0)
        layout[f"yaxis{ax}"] = _axis("", anchor=f"x{ax}", rangemode="tozero")
        annotations.append({"text": f"<b>{title}</b>", "xref": "paper", "yref": "paper", "x": (lo + hi) / 2, "y": 1.08,
                            "showarrow": False, "xanchor": "center"})
    layout["annotations"] = annotations
    return {"data": data, "layout": layout}


def fig_sensitivity(d: dict[str, Any]) -> dict[str, Any] | None:
    rows = [(r, r.days_low, r.days_high) for r in d["sensitivity"] if _num(r.days_low) and _num(r.days_high)]
    if not rows or not d["summary"]:
        return None
    base = rows[0][0].days_base if _num(rows[0][0].days_base) else d["summary"]["days"]
    names = [f"<b>{ptxt(_short(r.assumption, 34))}</b><br>{ptxt(_short(_fmt_val(r.low), 26))} → "
             f"{ptxt(_short(_fmt_val(r.high), 26))}" for r, _, _ in rows]
    lo = [days_low - base for _, days_low, _ in rows]
    hi = [days_high - base for _, _, days_high in rows]
    eps = 0.005 * max(base, 1e-9)
    texts_lo, texts_hi = [], []
    for (r, days_low, days_high), a, b in zip(rows, lo, hi):
        tl = "" if abs(a) < eps else f"{days_low:.1f} d"
        th = "" if abs(b) < eps else f"{days_high:.1f} d"
        if tl and th and (a > 0) == (b > 0):  # both on one side: one label on the longer bar
            both = f"{days_low:.1f} / {days_high:.1f} d"
            tl, th = (both, "") if abs(a) > abs(b) else ("", both)
        if not tl and not th:
            th = "days unchanged" + _cost_range(r)
        texts_lo.append(tl)
        texts_hi.append(th)
    hover = [f"{ptxt(r.assumption)}: {ptxt(_fmt_val(r.low))} → {days_low:.1f} d, "
             f"{ptxt(_fmt_val(r.high))} → {days_high:.1f} d" for r, days_low, days_high in rows]
    data = [{"type": "bar", "orientation": "h", "name": "low setting", "y": names, "x": lo, "base": base,
             "marker": {"color": "#7fa7d6"}, "text": texts_lo, "textposition": "outside", "cliponaxis": False,
             "customdata": hover, "hovertemplate": "%{customdata}<extra></extra>"},
            {"type": "bar", "orientation": "h", "name": "high setting", "y": names, "x": hi, "base": base,
             "marker": {"color": ACCENT2}, "text": texts_hi, "textposition": "outside", "cliponaxis": False,
             "customdata": hover, "hovertemplate": "%{customdata}<extra></extra>"}]
    span = max([abs(v) for v in lo + hi] + [base * 0.05])
    return {"data": data, "layout": _layout(
        barmode="overlay", height=max(300, 62 * len(rows) + 130), bargap=0.35,
        xaxis=_axis("wall-clock days", range=[max(0, base - span * 2.2), base + span * 2.2]),
        yaxis=_axis("", automargin=True), margin={"l": 20, "r": 30, "t": 50, "b": 60},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1, "xanchor": "right"},
        shapes=[{"type": "line", "x0": base, "x1": base, "yref": "paper", "y0": 0, "y1": 1,
                 "line": {"color": "#333", "width": 2}}],
        annotations=[{"x": base, "yref": "paper", "y": 1.0, "text": f"plan: {base:.1f} days", "showarrow": False,
                      "yanchor": "bottom"}])}


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _num(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cost_range(r: SensitivityRow) -> str:
    if isinstance(r.cost_low, (int, float)) and isinstance(r.cost_high, (int, float)):
        return f" (cost {f_usd(r.cost_low)} to {f_usd(r.cost_high)})"
    return ""


def _fmt_val(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def fig_budget(d: dict[str, Any]) -> dict[str, Any] | None:
    """Days per curriculum stage, stacked, at each GPU count (only when there is more than one stage)."""
    b: BudgetView = d["budget"]
    if len(b.stages) < 2:
        return None
    data = []
    palette = [ACCENT, ACCENT2, OK, "#7a5195", "#ef5675", "#ffa600"]
    for i, st in enumerate(s.stage for s in b.stages):
        rows = [r for r in st.per_gpus if r.feasible]
        data.append({"type": "bar", "name": ptxt(st.name), "x": [str(r.gpus) for r in rows],
                     "y": [r.days for r in rows], "marker": {"color": palette[i % len(palette)]},
                     "hovertemplate": f"{ptxt(st.name)}: %{{y:.1f}} days<extra></extra>"})
    return {"data": data, "layout": _layout(barmode="stack", height=340, xaxis=_axis("GPUs", type="category"),
                                            yaxis=_axis("wall-clock days", rangemode="tozero"))}


def fig_passes(d: dict[str, Any]) -> dict[str, Any] | None:
    """Passes over the data that 60 and 90 days buy at each GPU count."""
    rows: list[PassRow] = [r for r in d["budget"].passes if r.feasible]
    if not rows:
        return None
    x = [str(r.gpus) for r in rows]
    data = [{"type": "bar", "name": f"in {n} days", "x": x, "y": ys, "marker": {"color": c},
             "text": [f"{y:.1f}" for y in ys], "textposition": "auto",
             "hovertemplate": f"%{{x}} GPUs, {n} days: %{{y:.1f}} passes<extra></extra>"}
            for n, c, ys in ((60, "#7fa7d6", [r.passes_in_60_days for r in rows]),
                             (90, ACCENT, [r.passes_in_90_days for r in rows]))]
    return {"data": data, "layout": _layout(barmode="group", height=320, xaxis=_axis("GPUs", type="category"),
                                            yaxis=_axis("passes over the data", rangemode="tozero"))}


# ------------------------------------------------------------------------------------------ HTML parts
def table(head: list[str], rows: list[list[str]], cls: str = "", wrap: tuple[int, ...] = ()) -> str:
    """An HTML table; cells are already-safe HTML (the callers escape). Columns in `wrap` hold prose."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f'<td class="txt">{c}</td>' if i in wrap else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def chart(div_id: str, fig: dict[str, Any] | None, empty: str, figs: list[tuple[str, dict[str, Any]]]) -> str:
    if fig is None:
        return f'<p class="empty">{esc(empty)}</p>'
    figs.append((div_id, fig))
    return f'<div class="chart" id="{div_id}"></div>'


def embed_json(obj: Any) -> str:
    """JSON safe inside a <script> element."""
    s = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def section(sid: str, title: str, lead: str, body: str) -> str:
    return (f'<section id="{sid}"><h2>{esc(title)}</h2>' + (f'<p class="lead">{lead}</p>' if lead else "")
            + body + "</section>")


def summary_html(d: dict[str, Any]) -> str:
    s = d["summary"]
    risks = "".join(f'<li class="risk {esc(r["level"])}"><span class="dot"></span><b>{esc(r["title"])}.</b> '
                    f'{esc(r["text"])}</li>' for r in d["risks"])
    if s is None:
        return f'<h3>Risks</h3><ul class="risks">{risks}</ul>'
    asked = f' ({s["gpus"]:,} asked)' if s["gpus_used"] != s["gpus"] else ""
    ep = f'{d["epochs"]:g} epoch{"" if d["epochs"] == 1 else "s"} over {d["samples"]:,} clips'
    step_sub = f'MFU {f_pct(s["mfu"])}' + (f', {s["samples_per_s"]:.1f} clips/s' if s["samples_per_s"] else "")
    tiles = [("Recommended", f'{s["gpus_used"]:,} × {esc(s["gpu"])}', f'{s["nodes"]} nodes of {d["gpu"]["gpus_per_node"]}{asked}'),
             ("Wall-clock time", f'{f_days(s["days"])} days', esc(ep)),
             ("GPU-hours", f_int(s["gpu_hours"]), f'at ${d["gpu"]["usd_per_hour"]:,.2f} per GPU-hour'),
             ("Cost", f_usd(s["cost_usd"]), "GPU time only"),
             ("Step", f'{s["step_s"]:.2f} s', step_sub)]
    tiles_html = "".join(f'<div class="tile"><div class="k">{k}</div><div class="v">{v}</div><div class="s">{sub}</div></div>'
                         for k, v, sub in tiles)
    reason = f'<p class="why"><b>Why this count:</b> {esc(s["best_reason"])} ({esc(d["objective"] or "time")} objective).</p>' \
        if s["best_reason"] else ""
    why = f'<p class="why"><b>Why this layout:</b> {esc(s["why_best"])}</p>' if s["why_best"] else ""
    b: BudgetView = d["budget"]
    cur = ""
    if b.curriculum:
        tot = next((t for t in b.totals if t.gpus == s["gpus"]), None)
        if tot and tot.feasible:
            cur = (f'<p class="why"><b>Whole curriculum</b> ({len(b.stages)} stages) on {s["gpus"]:,} GPUs: '
                   f'{f_days(tot.days)} days, {f_int(tot.gpu_hours)} GPU-hours, {f_usd(tot.cost_usd)}.</p>')
    return (f'<div class="tiles">{tiles_html}</div>'
            f'<p class="layout"><span class="label">Layout</span> {esc(s["layout_text"])}</p>{reason}{why}{cur}'
            f'<h3>Risks</h3><ul class="risks">{risks}</ul>')


def counts_table(d: dict[str, Any]) -> str:
    rows = []
    for r in d["counts"]:
        mark = ' <span class="badge">recommended</span>' if r["recommended"] else ""
        used = f' <span class="muted">(uses {r["gpus_used"]:,})</span>' if r["gpus_used"] not in (None, r["gpus"]) else ""
        dl = "—" if r["meets_deadline"] is None else ("meets deadline" if r["meets_deadline"] else "misses deadline")
        rej = ", ".join(f"{esc(k.replace('_', ' '))} {f_num(v)}" for k, v in (r["rejected"] or {}).items() if v) or "—"
        rows.append([f'{r["gpus"]:,}{used}{mark}', f_days(r["days"]), f_int(r["gpu_hours"]), f_usd(r["cost_usd"]),
                     esc(r["layout"]), esc(dl), f'{f_num(r["evaluated"])} evaluated, {f_num(r["feasible"])} fit; '
                     f'rejected: {rej}'])
    return table(["GPUs", "days", "GPU-hours", "cost", "best layout", "deadline", "layouts searched"],
                 rows, "num", wrap=(4, 6))


def layouts_table(d: dict[str, Any]) -> str:
    rows = []
    for i, e in enumerate(d["top_layouts"]):
        m, st = e.memory_gib, e.step
        rows.append([str(i + 1), esc(format_layout(e, "words")), f'{st.time_s:.2f} s', f_pct(st.mfu),
                     f'{m.total:.1f} / {m.capacity:g} GiB', f_days(e.train.days), f_usd(e.train.cost_usd)])
    return table(["#", "layout", "step", "MFU", "memory per GPU", "days", "cost"], rows, "num", wrap=(1,))


def _gpu_cell(c: dict[str, Any] | None, cp: int) -> str:
    if c is None:
        return '<div class="gpu idle" title="unused GPU"></div>'
    color = PP_COLORS[c["pp"] % len(PP_COLORS)]
    tip = f'rank {c["rank"]}: TP rank {c["tp"]}, CP rank {c["cp"]}, DP replica {c["dp"]}, pipeline stage {c["pp"]}'
    sub = f'P{c["pp"]}' + (f' C{c["cp"]}' if cp > 1 else "") + f' D{c["dp"]}'
    return f'<div class="gpu" style="background:{color}" title="{esc(tip)}"><span>T{c["tp"]}</span><small>{sub}</small></div>'


def grid_html(d: dict[str, Any]) -> str:
    """One model copy drawn in detail, then the whole cluster as a map (colour = pipeline stage)."""
    g = d["grid"]
    if not g:
        return '<p class="empty">No layout fits, so there is nothing to place on nodes.</p>'
    per = g["gpus_per_node"]
    # the nodes that hold data-parallel copy 0: one whole model copy (TP x CP x PP GPUs)
    copy0 = [n for n, row in enumerate(g["cells"]) if any(c is not None and c["dp"] == 0 for c in row)][:8]
    detail = "".join(f'<div class="node"><div class="nname">node {n}</div><div class="gpus" style="grid-template-columns:'
                     f'repeat({per},1fr)">{"".join(_gpu_cell(c, g["cp"]) for c in g["cells"][n])}</div></div>'
                     for n in copy0)
    cols = f'grid-template-columns:repeat({max(1, (per + 1) // 2)},9px)'
    mini = "".join(f'<div class="mnode" title="node {n}" style="{cols}">' + "".join(
        '<i class="idle"></i>' if c is None else
        f'<i style="background:{PP_COLORS[c["pp"] % len(PP_COLORS)]}" class="{"odd" if c["dp"] % 2 else ""}"></i>'
        for c in row) + "</div>" for n, row in enumerate(g["cells"]))
    more = (f'<p class="note">… and {g["nodes"] - g["shown_nodes"]} more nodes with the same pattern.</p>'
            if g["nodes"] > g["shown_nodes"] else "")
    legend = "".join(f'<span class="sw" style="background:{PP_COLORS[i % len(PP_COLORS)]}"></span>stage {i} '
                     for i in range(min(g["pp"], len(PP_COLORS))))
    copies = "copy" if g["dp"] == 1 else "copies"
    expl = (f'{g["world"]:,} GPUs on {g["nodes"]} nodes of {per}. One copy of the model spans {g["replica_gpus"]} GPUs '
            f'(TP {g["tp"]} × PP {g["pp"]} × CP {g["cp"]}); {g["dp"]} {copies} train on different clips (data parallel).')
    key = ("Each cell is a GPU: T = tensor-parallel rank (splits every layer), P = pipeline stage (a slice of the layers)"
           + (", C = context-parallel rank (a slice of the sequence)" if g["cp"] > 1 else "")
           + ", D = data-parallel copy. Megatron rank order: TP fastest, then CP, DP, PP — tensor parallelism stays "
             "inside a node, on the fast links.")
    return (f'<p class="note">{esc(expl)}</p><p class="note">{esc(key)}</p>'
            f'<p class="legend">Pipeline stage colour: {legend}</p>'
            f'<h3>One model copy (data-parallel copy D0) on {"its node" if len(copy0) == 1 else f"its {len(copy0)} nodes"}'
            f'</h3><div class="cluster">{detail}</div>'
            f'<h3>The whole cluster ({g["nodes"]} nodes; alternate data-parallel copies shaded)</h3>'
            f'<div class="minimap">{mini}</div>{more}')


def attention_table(d: dict[str, Any]) -> str:
    rows = []
    for r in d["attention"]:
        saved = r.get("days_saved")
        rows.append([esc(r["attention"]), f'{r["forward_flops"] / 1e12:,.0f}', f'{r["self_attn_core_flops"] / 1e12:,.0f}',
                     f'{r["activations_gib"]:.1f}', f'{r["memory_total_gib"]:.1f}', "yes" if r["fits"] else "no",
                     f_days(r["days"]), "—" if saved is None else f_days(saved)])
    return table(["attention", "forward TFLOP / clip", "of which attention", "activations GiB / GPU",
                  "total GiB / GPU", "fits", "days", "days saved vs full"], rows, "num")


def sensitivity_table(d: dict[str, Any]) -> str:
    rows = [[esc(r.assumption), esc(_fmt_val(r.base)), esc(_fmt_val(r.low)), esc(_fmt_val(r.high)),
             f'{f_days(r.days_low)} – {f_days(r.days_high)}', _sensitivity_cost(r), esc(r.note)]
            for r in reversed(d["sensitivity"])]
    return table(["assumption", "planned", "low", "high", "days (low – high)", "cost (low – high)", "note"], rows, "num",
                 wrap=(0, 1, 2, 3, 6))


def _sensitivity_cost(r: SensitivityRow) -> str:
    return f"{f_usd(r.cost_low)} – {f_usd(r.cost_high)}" if _num(r.cost_low) and _num(r.cost_high) else "—"


def _stage_row(st: StageAtBest) -> list[str]:
    """A stage's cells at the recommended GPU count (its layout, days, hours, cost, read rates, or why none)."""
    a, stage = st.at_best, st.stage
    head = [esc(stage.name), esc(stage.geometry or ""), f_num(stage.sequence_length), f_int(stage.samples)]
    if a is None or not a.feasible:
        return head + [esc((a.message if a else None) or "no layout fits"), "—", "—", "—", "—"]
    latent, raw = a.read_mb_s_per_gpu_latent, a.read_mb_s_per_gpu_raw
    reads = f"{latent:.2f} / {raw:.2f}" if _num(latent) and _num(raw) else "—"
    return head + [esc(a.layout or ""), f_days(a.days), f_int(a.gpu_hours), f_usd(a.cost_usd), reads]


def budget_html(d: dict[str, Any], figs: list[tuple[str, dict[str, Any]]]) -> str:
    b: BudgetView = d["budget"]
    if not b.stages:
        return '<p class="empty">No training budget in this plan.</p>'
    out = f'<div class="callout">{esc(b.statement)}</div>' if b.statement else ""
    rows = [_stage_row(st) for st in b.stages]
    title = f"<h3>Per stage on {b.gpus:,} GPUs (the recommended count)</h3>" if b.gpus else ""
    out += title + table(["stage", "geometry", "tokens", "samples", "best layout", "days", "GPU-hours", "cost",
                          "read MB/s per GPU (latents / raw)"], rows, "num", wrap=(0, 1, 4))
    if len(b.stages) > 1:
        out += "<h3>Days per stage at each GPU count</h3>" + chart("fig-budget", fig_budget(d), "", figs)
        trows = [[f"{t.gpus:,}", f_days(t.days) if t.feasible else "—", f_int(t.gpu_hours) if t.feasible else "—",
                  f_usd(t.cost_usd) if t.feasible else "—"] for t in b.totals]
        out += table(["GPUs", "total days", "total GPU-hours", "total cost"], trows, "num")
    if b.passes:
        n = f"{b.pass_samples:,} clips" if _num(b.pass_samples) else "the data"
        out += (f"<h3>What 60 and 90 days buy: passes over {esc(n)}</h3>"
                + chart("fig-passes", fig_passes(d), "No GPU count has a layout that fits.", figs))
    return out


def f_unit(x: Any, unit: str) -> str:
    """A measured/predicted value in its unit, readable (bytes as GiB/MiB, FLOPs as TFLOP/GFLOP)."""
    if not _num(x):
        return f_num(x)
    if unit == "B" and abs(x) >= 1024**2:
        return f"{x / 1024**3:,.3f} GiB" if abs(x) >= 1024**3 else f"{x / 1024**2:,.2f} MiB"
    if unit == "FLOP" and abs(x) >= 1e9:
        return f"{x / 1e12:,.4f} TFLOP" if abs(x) >= 1e12 else f"{x / 1e9:,.4f} GFLOP"
    if unit == "s":
        return f"{x:.3f} s"
    if unit == "TFLOP/s":
        return f"{x:.1f} TFLOP/s"
    if unit in ("", "params"):
        return f_num(x)
    return f"{f_num(x)} {esc(unit)}"


def validation_html(d: dict[str, Any]) -> str:
    v: Validation | None = d["validation"]
    if v is None:
        return ('<div class="callout warn"><b>No measurement backs this report.</b> Every number above comes from the '
                'planner\'s formulas and stated assumptions. Run <code>soraplan validate --json &gt; validation.json</code> '
                '(on a GPU: <code>--device cuda</code>) and pass <code>--validation validation.json</code>.</div>')
    info = f", {v.info} reported without a tolerance" if v.info else ""
    meta = (f'Measured {esc(v.date or "(no date in the file)")} on {esc(v.device or "(device not stated)")}: '
            f"{v.passed} passed, {v.failed} failed{info}.")
    if not v.gpu_run:
        meta += (" These are CPU / meta-device checks of parameters, FLOPs and activation memory; GPU speed was not "
                 "measured here, so the step-time efficiencies above rest on the backtest against published runs "
                 "(`soraplan backtest`).")
    rows = [[esc(r.config), esc(r.quantity), f_unit(r.predicted, r.unit), f_unit(r.measured, r.unit),
             "—" if r.error_pct is None else f"{r.error_pct:+.2f} %",
             "—" if r.tolerance_pct is None else ("exact" if r.tolerance_pct == 0 else f"≤ {r.tolerance_pct:g} %"),
             {True: '<span class="pass">pass</span>', False: '<span class="fail">fail</span>', None: "info"}[r.ok]]
            for r in v.rows]
    cls = "ok" if v.failed == 0 else "bad"
    return (f'<div class="callout {cls}">{meta}</div>'
            + table(["configuration", "quantity", "predicted", "measured", "error", "tolerance", "result"], rows, "num",
                    wrap=(0, 1)))


def assumptions_html(d: dict[str, Any]) -> str:
    return table(["assumption", "value", "source"],
                 [[esc(a["name"]), esc(a["value"]), esc(a["source"])] for a in d["assumptions"]])


# ------------------------------------------------------------------------------------------------ page
def render_html(d: dict[str, Any], command: str = "", now: datetime | None = None) -> str:
    """The whole page as one string (plotly.js inlined once)."""
    from plotly.offline import get_plotlyjs

    now = now or datetime.now(timezone.utc)
    figs: list[tuple[str, dict[str, Any]]] = []
    s = d["summary"]
    parts = [
        section("summary", "Summary", "", summary_html(d)),
        section("time-cost", "Time and cost vs GPU count",
                "Best layout at each GPU count. More GPUs finish sooner; cost grows when scaling loses efficiency.",
                chart("fig-counts", fig_counts(d), "No GPU count has a layout that fits.", figs) + counts_table(d)),
        section("memory", "Memory per GPU",
                "What each GPU holds for the top layouts, against its HBM capacity (dashed line).",
                chart("fig-memory", fig_memory(d), "No layout fits in GPU memory.", figs)),
        section("layouts", "Top layouts", f"The fastest layouts on {s['gpus_used']:,} GPUs." if s else "",
                (layouts_table(d) + ("<h3>Where the step time goes</h3>" + chart("fig-step", fig_step(d), "", figs)
                                     if fig_step(d) else ""))
                if d["top_layouts"] else '<p class="empty">No layout fits.</p>'),
        section("nodes", "The recommended layout on the nodes", "", grid_html(d)),
        section("attention", "Full vs window vs spatial-temporal attention",
                "The same model and layout with cheaper attention patterns (quality trade-offs are not modelled).",
                chart("fig-attention", fig_attention(d), "Only full attention applies to this spec.", figs)
                + (attention_table(d) if d["attention"] else "")
                + (f'<p class="note">{esc(d["attention_note"])}</p>' if d.get("attention_note") else "")),
        section("sensitivity", "What moves the schedule",
                "Wall-clock days when one assumption changes and everything else stays as planned.",
                chart("fig-sensitivity", fig_sensitivity(d), "No sensitivity analysis in this plan.", figs)
                + (sensitivity_table(d) if d["sensitivity"] else "")),
        section("budget", "Training budget", "Each curriculum stage on its own best layout; storage read rates; "
                "what two to three months of GPUs buy.", budget_html(d, figs)),
        section("validation", "Validation evidence", "Planner predictions checked against the real model.",
                validation_html(d)),
        section("assumptions", "Assumptions", "Every input the numbers rest on, with where it comes from.",
                assumptions_html(d)),
    ]
    scripts = "".join(f'<script type="application/json" data-plot="{div}">{embed_json(fig)}</script>' for div, fig in figs)
    summary_json = {k: s[k] for k in ("gpu", "gpus", "gpus_used", "days", "gpu_hours", "cost_usd", "layout", "step_s",
                                      "mfu")} if s else None
    head_line = (f'{esc(d["model"])} · {f_num(d["params_total"])} parameters · {d["sequence"]["tokens"]:,} tokens per clip · '
                 f'{esc(d["gpu"]["name"])}')
    tpl = string.Template(resources.files("soraplan.templates").joinpath("report.html").read_text(encoding="utf-8"))
    return tpl.substitute(
        title=esc(d["title"]), subtitle=head_line, sequence=esc(d["sequence"]["text"]),
        generated=esc(now.strftime("%Y-%m-%d %H:%M UTC")), command=f" from: <code>{esc(command)}</code>" if command else "", body="".join(parts),
        plotly_js=get_plotlyjs(), figures=scripts, summary_json=embed_json(summary_json))
