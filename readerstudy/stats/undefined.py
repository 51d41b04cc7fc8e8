"""A statistic that cannot be computed says so, with the reason, instead of 0 or NaN."""

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Undefined:
    reason: str

    def as_json(self) -> dict:
        return {"undefined": self.reason}

    def __str__(self):
        return f"undefined ({self.reason})"


def finite_or_undefined(value: float, reason: str):
    """`value` if it is a finite number, else Undefined(reason)."""
    value = float(value)
    return value if math.isfinite(value) else Undefined(reason)


def to_jsonable(obj):
    """Recursively turn results (Undefined, numpy scalars, tuples) into plain JSON values."""
    import numpy as np

    if isinstance(obj, Undefined):
        return obj.as_json()
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else {"undefined": "not a finite number"}
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    return obj
