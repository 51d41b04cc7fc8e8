"""The intensity space models are trained in, per modality.

XR and MR use the canonical codes scaled to [0, 1]. CT uses a piecewise-linear
companding of Hounsfield units that gives soft tissue (-100..300 HU) 60% of the
range: in the linear full-range space 50 HU is 1.2% of the range, below what a
briefly trained model's residual noise allows, so soft-tissue windows showed noise.
Sampling maps back exactly, so the pool always holds true HU.
"""

import numpy as np

from readerstudy.imaging import canonical

# (HU, model value) knots of the CT transfer function.
CT_KNOTS_HU = np.array([-1024.0, -100.0, 300.0, 3071.0])
CT_KNOTS_UNIT = np.array([0.0, 0.25, 0.85, 1.0])


def codes_to_model(codes: np.ndarray, modality: str, companded: bool) -> np.ndarray:
    """Canonical codes to model space in [0, 1]."""
    if modality == "CT" and companded:
        hu = np.asarray(codes, dtype=np.float32) - canonical.CT_HU_OFFSET
        return np.interp(hu, CT_KNOTS_HU, CT_KNOTS_UNIT).astype(np.float32)
    return canonical.codes_to_unit(codes)


def model_to_unit(values: np.ndarray, modality: str, companded: bool) -> np.ndarray:
    """Model space back to canonical unit space (codes / 4095), what add_synthetic_item takes."""
    if modality == "CT" and companded:
        hu = np.interp(np.asarray(values, dtype=np.float32), CT_KNOTS_UNIT, CT_KNOTS_HU)
        return ((hu + canonical.CT_HU_OFFSET) / canonical.CODE_MAX).astype(np.float32)
    return np.asarray(values, dtype=np.float32)
