"""Megatron-core's notices that are not news to a soraplan user, silenced in one place.

megatron-core warns at import and at model construction about things soraplan chooses on purpose:
Transformer Engine and Apex are absent (the DiT uses torch's SDPA and LayerNorm), `tp_group is None` before
parallel state exists, the ffn size given explicitly, deprecated scopes. Every entry point that imports
megatron (`soraplan train`, `soraplan validate`, the equivalence checks and measurement workers, the test
fixtures) calls `quiet_megatron()` first. pytest's own filters live in pyproject.toml.
"""

from __future__ import annotations

MEGATRON_NOTICES = ("Transformer Engine", "Apex", "full scope is deprecated", "tp_group is None",
                    "MLP requires ffn_hidden_size")


def quiet_megatron() -> None:
    """Ignore megatron-core's notices (by message), its UserWarnings and FutureWarnings, in this process."""
    import warnings

    for msg in MEGATRON_NOTICES:
        warnings.filterwarnings("ignore", message=f".*{msg}.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="megatron")
    warnings.filterwarnings("ignore", category=FutureWarning)
