"""The array functions the formula cores (`memory.memory_terms`, `step.step_terms`) call, on Python scalars.

A core takes `xp`: numpy for arrays of layouts (the search), `ScalarOps` for one layout (`estimate`).
"""

from __future__ import annotations

import math
from typing import Any


class ScalarOps:
    """numpy's `where`, `maximum`, `minimum` and `ceil` for Python scalars."""

    @staticmethod
    def where(c: Any, a: Any, b: Any) -> Any:
        return a if c else b

    @staticmethod
    def maximum(a: Any, b: Any) -> Any:
        return a if a >= b else b

    @staticmethod
    def minimum(a: Any, b: Any) -> Any:
        return a if a <= b else b

    @staticmethod
    def ceil(a: Any) -> Any:
        return math.ceil(a)
