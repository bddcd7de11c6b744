"""`soraplan estimate`: one spec -> sequence length, parameters, FLOPs, memory, step time, time to train."""

from typing import Annotated, Any, Optional

import typer

from .common import print_json, spec_from_flags, user_errors, with_spec_options

app = typer.Typer(help="Estimate cost, memory and time to train for one spec.", invoke_without_command=True,
                  no_args_is_help=False)


@app.callback()
@with_spec_options
def estimate(ctx: typer.Context,
             json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
             spec_flags: Any = None) -> None:
    """Sequence length, parameters, FLOPs, per-GPU memory, step time and time to train for one spec.

    Example (a 40 s 256x256 clip): soraplan estimate --frames 960 --res 256 --tp 8
    """
    if ctx.invoked_subcommand is not None:
        return
    from soraplan.planner.estimate import estimate as run

    spec, _ = spec_from_flags(spec_flags)
    result = run(spec)
    if json_out:
        print_json(result.to_json())
    else:
        from .estimate_view import render

        render(result)


# --- the captioning pass, the dataset budget and the preset list ---------------------------------------------
@app.command("caption")
@user_errors
def caption(
    vlm: Annotated[str, typer.Option("--vlm", help="qwen-vl-chat | cogvlm | yi-vl-34b | internlm-xcomposer2-vl-7b | minicpm-v | video-llava-7b")] = "qwen-vl-chat",
    clips: Annotated[str, typer.Option("--clips", help="clips to caption: 10M, 2.5e6, 100000")] = "10M",
    frames_per_clip: Annotated[int, typer.Option("--frames-per-clip", help="frames the VLM sees per clip")] = 8,
    caption_tokens: Annotated[int, typer.Option("--caption-tokens", help="generated tokens per clip caption")] = 128,
    prompt_tokens: Annotated[int, typer.Option("--prompt-tokens", help="text prompt tokens per clip")] = 64,
    batch: Annotated[int, typer.Option("--batch", help="clips per batch on one model instance")] = 16,
    gpu: Annotated[str, typer.Option("--gpu", help="GPU from the table (a100-80g, h100-sxm, ...)")] = "a100-80g",
    gpus: Annotated[int, typer.Option("--gpus", help="GPUs for the whole pass")] = 64,
    tp: Annotated[Optional[int], typer.Option("--tp", help="GPUs per model instance (default: the fewest that fit)")] = None,
    efficiency: Annotated[float, typer.Option("--efficiency", help="achieved/peak FLOP/s for the ViT and prefill")] = 0.4,
    bw_efficiency: Annotated[float, typer.Option("--bw-efficiency", help="achieved/peak HBM bandwidth in decode")] = 0.7,
    price: Annotated[Optional[float], typer.Option("--price", help="USD per GPU-hour (default: the GPU table)")] = None,
    summarize_llm: Annotated[Optional[str], typer.Option("--summarize-llm", help="LLM that condenses the frame captions: qwen-7b | vicuna-7b | yi-34b | internlm2-7b | minicpm-2.4b | llama-2-13b")] = None,
    summary_tokens: Annotated[int, typer.Option("--summary-tokens", help="tokens of the condensed caption")] = 256,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Video re-captioning pass: FLOPs and memory per clip, GPUs and days for a dataset (VLM presets).

    Example: soraplan estimate caption --vlm qwen-vl-chat --clips 10M --frames-per-clip 8 --gpus 64
    """
    from soraplan.planner.caption import caption_estimate

    r = caption_estimate(vlm, clips, frames_per_clip, caption_tokens, prompt_tokens, batch, gpu, gpus, tp,
                         efficiency, bw_efficiency, price=price, summarize_llm=summarize_llm,
                         summary_tokens=summary_tokens)
    if json_out:
        print_json(r)
    else:
        from .seed_view import render_caption

        render_caption(r)


@app.command("dataset")
@with_spec_options
def dataset_cmd(
    samples_per_s: Annotated[Optional[float], typer.Option("--samples-per-s", help="training read rate (default: the planner's step model)")] = None,
    latent_bytes: Annotated[int, typer.Option("--latent-bytes", help="bytes per stored latent value (2 = bf16)")] = 2,
    store_moments: Annotated[bool, typer.Option("--store-moments/--store-samples", help="store the VAE mean+logvar (2x)")] = False,
    vae_flops_per_pixel: Annotated[Optional[float], typer.Option("--vae-flops-per-pixel", help="override the measured VAE-encoder FLOPs per pixel")] = None,
    whole_videos: Annotated[bool, typer.Option("--whole-videos/--one-clip", help="encode every clip of each video, not one per sample")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    spec_flags: Any = None,
) -> None:
    """Dataset presets (youku-mplug, laion-5b): sizes, raw/latent storage, read GB/s, VAE-encoding GPU-days.

    Example: soraplan estimate dataset --dataset youku-mplug --frames 96 --res 256 --gpus 64
    """
    from soraplan.planner.dataset_budget import dataset_budget

    spec, _ = spec_from_flags(spec_flags)
    r = dataset_budget(spec, None, samples_per_s, latent_bytes, store_moments, vae_flops_per_pixel, whole_videos)
    if json_out:
        print_json(r)
    else:
        from .seed_view import render_dataset

        render_dataset(r)


@app.command("presets")
def presets_cmd(json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False) -> None:
    """List every preset: backbones (--model), VLM captioners, datasets, UNet video models (soraplan profile)."""
    from .seed_view import preset_listing, render_presets

    r = preset_listing()
    if json_out:
        print_json(r)
    else:
        render_presets(r)
