"""soraplan: compute planning and distributed-run orchestration for Sora-class video diffusion transformers."""

__version__ = "0.1.0"
