"""Shared fixtures. Heavy imports (torch, megatron) stay inside the fixtures that need them."""
