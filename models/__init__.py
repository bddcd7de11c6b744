"""soraplan.models: the Megatron-core video DiT that the planner describes (needs the [train] extra)."""
