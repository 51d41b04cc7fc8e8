"""NIfTI-1/2 (.nii, .nii.gz): reoriented to axial slices in radiological display convention."""

import gzip
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from . import geometry
from .base import RADIOLOGICAL_AXIAL, DecodedImage, UnreadableImage, check_dimensions, detail_of


def decode_file(path: Path) -> DecodedImage:
    # Opened through a file map rather than nib.load, which insists on a .nii/.nii.gz
    # name: uploads are recognised by content and may be called anything.
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as fh:
        return _decode(fh)


def _decode(fh) -> DecodedImage:
    header = fh.read(4)
    fh.seek(0)
    klass = nib.Nifti2Image if 540 in (int.from_bytes(header, "little"), int.from_bytes(header, "big")) else nib.Nifti1Image
    try:
        holder = nib.FileHolder(fileobj=fh)
        img = klass.from_file_map({"header": holder, "image": holder})
    except Exception as exc:  # nibabel raises many types for damaged headers
        raise UnreadableImage(f"not a readable NIfTI file ({detail_of(exc)})") from None
    if img.get_data_dtype().fields:
        raise UnreadableImage("NIfTI holds colour (RGB/RGBA) voxels; only greyscale images and volumes are supported")
    shape = tuple(int(s) for s in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3:
        raise UnreadableImage(
            f"NIfTI image has shape {img.shape}; only 2D images and 3D volumes are supported"
            " (extract one volume from a time series first)"
        )
    x, y, z = shape
    check_dimensions(z, y, x)
    try:
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except (EOFError, OSError, ValueError, zlib.error) as exc:
        raise UnreadableImage(f"NIfTI pixel data is truncated or corrupt ({detail_of(exc)})") from None
    data = data.reshape(data.shape[:3]) if data.ndim == 4 else data
    planar = data.ndim == 2
    if planar:
        data = data[:, :, None]
    finite = np.isfinite(data)
    if not finite.any():
        raise UnreadableImage("NIfTI image contains no finite values")
    if not finite.all():
        data = np.where(finite, data, np.nanmin(np.where(finite, data, np.nan)))
    # A 2D image is shown as stored (its affine is not looked at); a volume is resliced by the rule
    # every volume follows (decoders/geometry.py).
    try:
        resliced = geometry.radiological_axial(data, np.eye(4) if planar else img.affine)
    except UnreadableImage:
        raise UnreadableImage("the NIfTI orientation (sform/qform affine) is unusable: it does not map the "
                              "voxel axes to patient axes (an all-zero or degenerate affine)") from None
    step = 0.0
    if np.issubdtype(img.get_data_dtype(), np.integer):
        slope = getattr(img.dataobj, "slope", 1.0)
        step = abs(float(slope)) if np.isfinite(slope) and slope else 1.0
    info = {"format": "NIfTI", "datatype": str(img.get_data_dtype())}
    if planar:
        info["native_orientation"] = "".join(nib.aff2axcodes(img.affine))
    else:
        info.update(native_orientation=resliced.native_axcodes,
                    orientation=RADIOLOGICAL_AXIAL if resliced.aligned else None)
    return DecodedImage(
        values=resliced.values.astype(np.float32, copy=False),
        calibrated=True,
        spacing_mm=None if planar else resliced.spacing_mm,
        quantisation_step=step,
        info=info,
    )
