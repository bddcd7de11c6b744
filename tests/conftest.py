"""Shared fixtures. Heavy imports (torch, megatron) stay inside the fixtures that need them."""

from megatron_fixtures import megatron_pg  # noqa: E402,F401  (session process group for the model tests)
