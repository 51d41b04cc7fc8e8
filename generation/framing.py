"""How the built-in models see an item: exactly as readers are served it (`canonical.frame`).

Training data (`data.py`) and the real-as-synthetic control (`control.py`) both
call this, so the control goes through the same framing as a generator's samples.
"""

import numpy as np

from readerstudy.imaging import canonical


def model_frame(codes: np.ndarray, resolution: int, depth: int = 1) -> np.ndarray:
    """(D, H, W) codes framed at the model's matrix: (depth, resolution, resolution) float32 in code units.

    Not rounded: the served path rounds once, after framing and the percentile
    rule; rounding here as well would leave the control's grey levels on a grid.
    """
    return canonical.frame(codes, resolution, resolution, depth)
