"""soraplan.planner: pure functions from a Spec to a Plan. Imports no torch, megatron, plotly, kubernetes or submitit."""

from .config import SpecError, build_spec, build_spec_and_extras
from .spec import Spec

__all__ = ["Spec", "SpecError", "build_spec", "build_spec_and_extras"]
