"""One rule for every volume, whatever its format: reslice to radiological axial without resampling.

A volume arrives with an affine from voxel indices to patient millimetres (NIfTI: RAS+, from its
sform/qform; DICOM: LPS+, from ImageOrientationPatient, ImagePositionPatient and PixelSpacing, built
here). Its axes are permuted and flipped onto the patient axes they lie closest to, so that slices run
inferior -> superior, rows anterior -> posterior and columns from the patient's right to left (the
patient's right on the image's left). Only whole axes are moved: no voxel is interpolated.
"""

from dataclasses import dataclass

import numpy as np

from .base import UnreadableImage

# Every voxel axis within about 25 degrees of a patient axis: close enough to label the views
# A/P/L/R as PACS label oblique series by their dominant direction.
ALIGNED_COSINE = 0.9
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Resliced:
    values: np.ndarray  # (slices, rows, cols), C-contiguous
    spacing_mm: list[float]  # (slice, row, col)
    native_axcodes: str  # where the stored axes pointed, e.g. "LPS", "PSR" (nibabel's RAS letters)
    aligned: bool  # every stored axis lies close to one patient axis, so the view labels are right


def radiological_axial(data_xyz: np.ndarray, affine_ras: np.ndarray) -> Resliced:
    """`data_xyz` indexed (i, j, k) as the affine's columns, `affine_ras` mapping (i, j, k, 1) to RAS+ mm."""
    from nibabel import orientations  # here: nibabel's package import pulls in scipy, kept out of the web process

    affine_ras = np.asarray(affine_ras, dtype=float)
    axes = affine_ras[:3, :3]
    lengths = np.linalg.norm(axes, axis=0)
    if not np.all(np.isfinite(axes)) or np.any(lengths <= 1e-6) or abs(np.linalg.det(axes)) <= 1e-9 * lengths.prod():
        raise UnreadableImage("the volume's orientation is unusable: its affine does not map the voxel axes "
                              "to patient axes (zero, degenerate or non-finite)")
    try:
        ornt = orientations.io_orientation(affine_ras)
        ras = orientations.apply_orientation(data_xyz, ornt)
    except orientations.OrientationError:
        raise UnreadableImage("the volume's orientation is unusable: two voxel axes point the same way") from None
    spacing_ras = [0.0, 0.0, 0.0]
    for stored_axis, (patient_axis, _) in enumerate(ornt):
        spacing_ras[int(patient_axis)] = float(lengths[stored_axis])
    cosines = np.abs(axes / lengths)
    # RAS+ (x: left -> right, y: posterior -> anterior, z: inferior -> superior) to
    # (slice, row, col) with anterior at the top and the patient's right on the image's left. A view, not
    # a copy: the intensity rule (canonical.to_codes) makes the one copy an import needs.
    volume = np.transpose(ras, (2, 1, 0))[:, ::-1, ::-1]
    return Resliced(
        values=volume,
        spacing_mm=[spacing_ras[2], spacing_ras[1], spacing_ras[0]],
        native_axcodes="".join(orientations.aff2axcodes(affine_ras)),
        aligned=bool(np.all(cosines.max(axis=0) >= ALIGNED_COSINE)),
    )


def dicom_affine(orientation, first_position, slice_step_mm: float, pixel_spacing) -> np.ndarray:
    """The RAS+ affine of a DICOM stack stored as (slice, row, col), indexed here as (col, row, slice).

    `orientation` is ImageOrientationPatient (row then column direction cosines, LPS), `first_position`
    the first slice's ImagePositionPatient, `slice_step_mm` the distance between slices along the
    normal (positive: slices stored in the normal's direction), `pixel_spacing` (row, column) mm.
    """
    iop = np.asarray(orientation, dtype=float)
    along_row, along_column = iop[:3], iop[3:]
    normal = np.cross(along_row, along_column)
    row_mm, col_mm = (float(v) for v in pixel_spacing)
    lps = np.eye(4)
    lps[:3, 0] = along_row * col_mm  # column index i moves along a row
    lps[:3, 1] = along_column * row_mm  # row index j moves down a column
    lps[:3, 2] = normal * slice_step_mm
    lps[:3, 3] = np.asarray(first_position, dtype=float)
    return LPS_TO_RAS @ lps


def reslice_stack(values: np.ndarray, affine_ras: np.ndarray) -> Resliced:
    """A (slice, row, col) stack, as DICOM stores it, resliced by `radiological_axial`."""
    return radiological_axial(np.transpose(values, (2, 1, 0)), affine_ras)
