"""The measuring harness: builds the Megatron-core video DiT from a Spec and checks the planner against it.

Counters (FLOPs, saved-for-backward bytes, parameters per group), multi-process equivalence checks (TP, PP,
CP), the validate matrix and the GPU measurements live here; the model itself lives in `soraplan.models`.
"""
