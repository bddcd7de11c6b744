"""Rich tables for the estimate subcommands: `estimate caption`, `estimate dataset`, `estimate presets`."""

from typing import Any

from rich.console import Console

from soraplan.planner.estimate import human

from .table_view import Grid, console


def _t(title: str, *cols: str) -> Grid:
    return Grid(title, cols[0], *(f">{c}" for c in cols[1:]))


def _mem_row(t: Grid, label: str, m: dict[str, Any]) -> None:
    t.add_row(label, f"{m['tp']}", f"{m['weights']:.1f}", f"{m['kv_cache']:.1f}", f"{m['activations']:.1f}",
              f"{m['total']:.1f}", f"{m['capacity']:.0f}", "[green]yes[/]" if m["fits"] else "[red]no[/]")


def render_caption(r: dict[str, Any], console_: Console | None = None) -> None:
    c = console_ or console()
    v, llm = r["vision"], r["llm"]
    c.print(f"[bold]{r['vlm']}[/]: {v['encoder']} ({v['layers']}x{v['width']}, {v['tokens_in_encoder']} tokens/frame in the "
            f"ViT, {v['llm_tokens_per_frame']} to the LLM via {v['adapter']}) + {llm['name']} ({llm['layers']}x{llm['hidden']}, "
            f"ffn {llm['ffn']}, {llm['heads']}/{llm['kv_heads']} heads, vocab {llm['vocab']:,})")
    c.print(f"[dim]{r['source']}[/]" + (f"  [dim]{r['note']}[/]" if r["note"] else ""))
    p = r["params"]
    c.print(f"Parameters: vision {human(p['vision'])}, adapter {human(p['adapter'])}, LLM {human(p['llm'])}"
            + (f", visual expert {human(p['visual_expert'])}" if p["visual_expert"] else "")
            + f" = {human(p['total'])} (published {p['published_b']:g} B)")
    pc = r["per_clip"]
    t = _t(f"Per clip: {r['frames_per_clip']} frames, {r['prompt_tokens']} prompt + {r['caption_tokens']} caption tokens",
           "part", "FLOPs")
    t.add_row("vision encoder", human(pc["vision_flops"]))
    t.add_row("adapter", human(pc["adapter_flops"]))
    t.add_row(f"LLM prefill ({pc['prefill_tokens']:,} tokens)", human(pc["prefill_flops"]))
    t.add_row(f"LLM decode ({r['caption_tokens']} tokens)", human(pc["decode_flops"]))
    t.add_row("[bold]total[/]", f"[bold]{human(pc['total_flops'])}[/]")
    t.add_row("KV cache per clip", f"{pc['kv_cache_bytes'] / 2**20:,.0f} MiB")
    c.print(t)
    t = _t(f"Memory per GPU (GiB), batch {r['batch']}", "pass", "tp", "weights", "KV cache", "activations", "total",
           "capacity", "fits")
    _mem_row(t, "caption", r["memory_gib"])
    if r["summary"]:
        _mem_row(t, f"summary ({r['summary']['llm']})", r["summary"]["memory_gib"])
    c.print(t)
    t = _t(f"Time on {r['gpus']} x {r['gpu']} for {r['clips']:,} clips", "pass", "instances x tp", "compute s/batch",
           "decode s/batch", "decode bound", "clips/s", "days", "GPU-hours", "cost $")
    rows = [("caption", r["time"])] + ([(f"summary ({r['summary']['llm']})", r["summary"]["time"])] if r["summary"] else [])
    for label, tm in rows:
        t.add_row(label, f"{tm['instances']} x {tm['tp']}", f"{tm['compute_s_per_batch']:.2f}", f"{tm['decode_s_per_batch']:.2f}",
                  tm["decode_bound"], f"{tm['clips_per_s']:,.1f}", f"{tm['days']:.2f}", f"{tm['gpu_hours']:,.0f}",
                  f"{tm['cost_usd']:,.0f}")
    t.add_row("[bold]total[/]", "", "", "", "", "", f"[bold]{r['total_days']:.2f}[/]", f"{r['total_gpu_hours']:,.0f}", "")
    c.print(t)
    for a in r["assumptions"]:
        c.print(f"[dim]- {a}[/]")


def render_dataset(r: dict[str, Any], console_: Console | None = None) -> None:
    c = console_ or console()
    c.print(f"[bold]{r['dataset']}[/]: {r['note']}")
    for s in r["sources"]:
        c.print(f"[dim]source: {s}[/]")
    d = r["durations"]
    if r["kind"] == "video":
        c.print(f"{r['samples']:,} clips, {d['min_s']:g}-{d['max_s']:g} s (mean {d['mean_s']:g} s), "
                f"{d['total_hours']:,.0f} hours, {r['categories']} categories")
        t = _t("Duration distribution", "bin", "fraction", "clips")
        for b in d["bins"]:
            t.add_row(b["label"], f"{b['fraction']:.0%}", f"{b['fraction'] * r['samples']:,.0f}")
        c.print(t)
    else:
        c.print(f"{r['samples']:,} images")
        t = _t("Subsets", "subset", "samples")
        for s in r["subsets"]:
            t.add_row(s["name"], f"{s['samples']:,}")
        c.print(t)
    t = _t("Resolution distribution", "bin", "fraction", "representative")
    for b in r["resolutions"]:
        t.add_row(b["label"], f"{b['fraction']:.0%}", f"{b['width']}x{b['height']}")
    c.print(t)
    g, s, rd, ve = r["geometry"], r["storage"], r["read"], r["vae_encode"]
    t = _t(f"Storage and reads at the training geometry ({g['frames']} frames, {g['width']}x{g['height']} -> latent "
           f"{g['latent'][0]}x{g['latent'][1]}x{g['latent'][2]}x{g['latent_channels']})", "quantity", "value")
    t.add_row("raw (published)", f"{s['raw_tb']:,.1f} TB ({s['raw_mb_per_sample']:.2f} MB/sample"
              + (f", {s['raw_bitrate_mbps']:.2f} Mbit/s)" if s["raw_bitrate_mbps"] else ")"))
    t.add_row("latents", f"{s['latent_tb']:,.1f} TB ({s['latent_mb_per_sample']:.3f} MB/sample, "
              f"{g['clips_per_sample']:.1f} clips/sample)")
    t.add_row("latent / raw", f"{s['latent_over_raw']:.2f}")
    if r.get("short_fraction"):
        t.add_row("videos shorter than one training clip", f"{r['short_fraction']:.0%} (per the duration bins)")
    t.add_row("training read rate", f"{rd['samples_per_s']:,.1f} samples/s ({rd['samples_per_s_source']})")
    t.add_row("read bandwidth: latents", f"{rd['latent_gb_per_s']:.3f} GB/s")
    t.add_row("read bandwidth: raw (decode on the fly)", f"{rd['raw_gb_per_s']:.3f} GB/s")
    t.add_row("one epoch", f"{rd['epoch_hours']:,.1f} h")
    c.print(t)
    t = _t("Precompute latents (VAE encoder)", "quantity", "value")
    t.add_row("FLOPs per pixel (measured)", human(ve["flops_per_pixel"]))
    t.add_row("total FLOPs", human(ve["total_flops"]))
    t.add_row(f"GPU-hours ({ve['gpu']} at {ve['efficiency']:.0%})", f"{ve['gpu_hours']:,.0f}")
    t.add_row(f"days on {ve['gpus']} GPUs", f"{ve['days']:.2f}")
    t.add_row("cost", f"${ve['cost_usd']:,.0f}")
    c.print(t)
    for a in r["assumptions"]:
        c.print(f"[dim]assumption: {a}[/]")


def preset_listing() -> dict[str, Any]:
    from soraplan.validation.profile import list_presets
    from soraplan.planner.datasets import DATASETS
    from soraplan.planner.preset_table import preset_rows
    from soraplan.planner.presets import FAMILIES, PRESETS
    from soraplan.planner.vlm_presets import LLMS, VLMS

    return {
        "backbones": {"families": FAMILIES, "names": list(PRESETS)},
        "models": preset_rows(),
        "captioners": {n: {"vision": v.vision.name, "llm": v.llm.name, "params_b": v.params_published_b} for n, v in VLMS.items()},
        "summarizers": list(LLMS),
        "datasets": {n: d.note for n, d in DATASETS.items()},
        "unet_video_models": {n: p["title"] for n, p in list_presets().items()},
    }


def render_presets(r: dict[str, Any], console_: Console | None = None) -> None:
    c = console_ or console()
    t = _t("Backbones: soraplan estimate --model NAME", "family", "what")
    for fam, what in r["backbones"]["families"].items():
        t.add_row(fam, what)
    c.print(t)
    t = _t("Model presets: parameters and default geometry", "name", "params", "geometry", "tokens", "blocks", "source")
    for row in r.get("models", []):
        t.add_row(row["name"], f"{row['params']:,}", row["geometry"], f"{row['tokens']:,}", str(row["blocks"]) + (f"+{row['single_blocks']}" if row["single_blocks"] else ""), row["source"])
    c.print(t)
    t = _t("Captioners: soraplan estimate caption --vlm NAME", "name", "vision encoder", "LLM", "params")
    for n, v in r["captioners"].items():
        t.add_row(n, v["vision"], v["llm"], f"{v['params_b']:g} B")
    c.print(t)
    c.print("Summarisers (--summarize-llm): " + ", ".join(r["summarizers"]))
    t = _t("Datasets: soraplan estimate dataset --dataset NAME", "name", "what")
    for n, what in r["datasets"].items():
        t.add_row(n, what)
    c.print(t)
    t = _t("UNet video models: soraplan profile --preset NAME (needs diffusers)", "name", "what")
    for n, what in r["unet_video_models"].items():
        t.add_row(n, what)
    c.print(t)
