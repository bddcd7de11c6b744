"""The GPU table: hardware as data, one row per accelerator.

Peak numbers are dense (no 2:4 sparsity) bf16/fp16 tensor-core FLOP/s from the vendors' data sheets.
Bandwidths are per GPU and per direction, as collectives see them: `intra_node_gbs` over NVLink/xGMI/HCCS
(PCIe where a card has no such link), `inter_node_gbs` over the scale-out network (one NIC per GPU).
`usd_per_hour` is a stated default (typical 2025 cloud on-demand list price); override it with `--price`.

An unknown GPU is refused with the list of known names: soraplan never guesses hardware. Custom GPUs come
through the YAML file (`hardware: {custom: {...}}`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class GPU(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str
    peak_tflops: float = Field(gt=0, description="dense bf16/fp16 tensor TFLOP/s")
    hbm_gib: float = Field(gt=0)
    hbm_tbs: float = Field(gt=0, description="HBM bandwidth TB/s")
    intra_node_gbs: float = Field(gt=0, description="NVLink-class GB/s per GPU per direction")
    inter_node_gbs: float = Field(gt=0, description="network GB/s per GPU per direction")
    gpus_per_node: int = Field(8, ge=1)
    usd_per_hour: float = Field(ge=0)
    source: str = "vendor data sheet"


_TABLE: tuple[GPU, ...] = (
    GPU(name="a100-40g", peak_tflops=312, hbm_gib=40, hbm_tbs=1.555, intra_node_gbs=300, inter_node_gbs=25, usd_per_hour=1.60,
        source="NVIDIA A100 data sheet (SXM4, NVLink 3: 600 GB/s bidirectional; HDR 200 Gb/s per GPU)"),
    GPU(name="a100-80g", peak_tflops=312, hbm_gib=80, hbm_tbs=2.039, intra_node_gbs=300, inter_node_gbs=25, usd_per_hour=2.00,
        source="NVIDIA A100 data sheet (SXM4 80GB, NVLink 3; HDR 200 Gb/s per GPU)"),
    GPU(name="h100-sxm", peak_tflops=989, hbm_gib=80, hbm_tbs=3.35, intra_node_gbs=450, inter_node_gbs=50, usd_per_hour=3.00,
        source="NVIDIA H100 data sheet (SXM5, NVLink 4: 900 GB/s bidirectional; NDR 400 Gb/s per GPU)"),
    GPU(name="h100-pcie", peak_tflops=756, hbm_gib=80, hbm_tbs=2.0, intra_node_gbs=64, inter_node_gbs=25, usd_per_hour=2.50,
        source="NVIDIA H100 PCIe data sheet (PCIe Gen5 x16 between cards)"),
    GPU(name="h200", peak_tflops=989, hbm_gib=141, hbm_tbs=4.8, intra_node_gbs=450, inter_node_gbs=50, usd_per_hour=3.50,
        source="NVIDIA H200 data sheet (SXM, 141 GB HBM3e, NVLink 4)"),
    GPU(name="h800", peak_tflops=989, hbm_gib=80, hbm_tbs=3.35, intra_node_gbs=200, inter_node_gbs=50, usd_per_hour=2.50,
        source="NVIDIA H800 (SXM, NVLink 400 GB/s bidirectional)"),
    GPU(name="b200", peak_tflops=2250, hbm_gib=180, hbm_tbs=8.0, intra_node_gbs=900, inter_node_gbs=50, usd_per_hour=5.00,
        source="NVIDIA B200 data sheet (HGX, NVLink 5: 1.8 TB/s bidirectional)"),
    GPU(name="l40s", peak_tflops=362, hbm_gib=48, hbm_tbs=0.864, intra_node_gbs=32, inter_node_gbs=12.5, usd_per_hour=1.00,
        source="NVIDIA L40S data sheet (no NVLink; PCIe Gen4)"),
    GPU(name="mi300x", peak_tflops=1307, hbm_gib=192, hbm_tbs=5.3, intra_node_gbs=448, inter_node_gbs=50, usd_per_hour=3.00,
        source="AMD Instinct MI300X data sheet (Infinity Fabric 7 x 64 GB/s)"),
    GPU(name="ascend-910b", peak_tflops=313, hbm_gib=64, hbm_tbs=1.6, intra_node_gbs=196, inter_node_gbs=25, usd_per_hour=1.50,
        source="Huawei Ascend 910B (fp16; HCCS 392 GB/s bidirectional)"),
)

GPUS: dict[str, GPU] = {g.name: g for g in _TABLE}
_ALIASES = {"a100": "a100-80g", "a100-80gb": "a100-80g", "a100-40gb": "a100-40g", "h100": "h100-sxm", "h100-80g": "h100-sxm",
            "910b": "ascend-910b"}


class UnknownGPU(ValueError):
    pass


def resolve_gpu(name: str) -> GPU:
    """The table row for `name` (case-insensitive, a few aliases); a clear error for an unknown GPU."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in GPUS:
        raise UnknownGPU(f"hardware.gpu: unknown GPU {name!r}; known: {', '.join(GPUS)} (or give hardware.custom in --config)")
    return GPUS[key]


class HostShare(BaseModel):
    """Host CPU and memory a pod/task asks for per GPU it uses (requests for schedulers, not peaks)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpus_per_gpu: int = Field(ge=1)
    mem_gib_per_gpu: int = Field(ge=1)
    source: str = ""


# Conservative shares that fit the usual 8-GPU hosts after system reservations: DGX A100 (256 threads,
# 1-2 TiB), DGX H100/H200 (224 threads, 2 TiB), AWS p4d (96 vCPU, 1152 GiB), p5 (192 vCPU, 2 TiB).
# Data loaders and pinned host buffers of one rank fit well within them.
HOST_DEFAULT = HostShare(cpus_per_gpu=10, mem_gib_per_gpu=96, source="fits DGX A100 / AWS p4d after reservations")
HOST_SHARE: dict[str, HostShare] = {
    "h200": HostShare(cpus_per_gpu=12, mem_gib_per_gpu=160, source="DGX H200: 224 threads, 2 TiB"),
    "b200": HostShare(cpus_per_gpu=12, mem_gib_per_gpu=160, source="DGX B200: 224 threads, 2 TiB"),
    "mi300x": HostShare(cpus_per_gpu=12, mem_gib_per_gpu=160, source="8x MI300X platforms: 2x 96-core, 2-3 TiB"),
    "l40s": HostShare(cpus_per_gpu=6, mem_gib_per_gpu=48, source="typical 8x L40S servers: 64 cores, 512 GiB"),
}


def host_share(gpu_name: str) -> HostShare:
    """Per-GPU host CPU and memory requests for the GPU table row `gpu_name` (HOST_DEFAULT for others)."""
    return HOST_SHARE.get(gpu_name, HOST_DEFAULT)
