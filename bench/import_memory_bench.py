"""Peak memory of importing one volume, in bytes per voxel: decoding alone, and the whole import (decode,
master array), for a NIfTI (.nii.gz, int16 and float32) and a DICOM series.

Run by hand (not in CI), from the repository root:

    .venv/bin/python bench/import_memory_bench.py [--shape 160 512 512] [--write docs/benchmarks.md]

Each measurement runs in a fresh interpreter with its own data folder: the peak resident set
(ru_maxrss) after Django is set up and migrated is the baseline, the peak after the work minus that
baseline is what the work needed.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from report import cpu_name, publish  # noqa: E402

WRITE = r"""
import sys
from pathlib import Path
import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

kind, folder, depth, rows, cols = sys.argv[1], Path(sys.argv[2]), *map(int, sys.argv[3:6])
rng = np.random.default_rng(0)
volume = (rng.integers(-1000, 2000, size=(cols, rows, depth), dtype=np.int16))
if kind.startswith("nifti"):
    data = volume.astype(np.float32) if kind == "nifti-float32" else volume
    nib.save(nib.Nifti1Image(data, np.diag([0.7, 0.7, 1.5, 1.0])), folder / "volume.nii.gz")
else:
    series = generate_uid()
    (folder / "series").mkdir()
    for k in range(depth):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "CT", "bench", series, series
        ds.InstanceNumber, ds.SamplesPerPixel, ds.PhotometricInterpretation = k + 1, 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [0, 0, 1.5 * k]
        ds.PixelSpacing, ds.SliceThickness, ds.RescaleSlope, ds.RescaleIntercept = [0.7, 0.7], 1.5, 1, 0
        ds.Rows, ds.Columns = rows, cols
        ds.PixelData = np.ascontiguousarray(volume[:, :, k].T).tobytes()
        ds.save_as(folder / "series" / f"{k:04d}.dcm", enforce_file_format=True)
"""

MEASURE = r"""
import json, resource, sys
from pathlib import Path
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from readerstudy.imaging.decoders import Format, decode_source
from readerstudy.imaging.importing import ImportOptions, Layout, import_path
from readerstudy.imaging.models import Dataset, Origin

what, path = sys.argv[1], Path(sys.argv[2])
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if what == "decode":
    paths = sorted(path.iterdir()) if path.is_dir() else [path]
    decoded = decode_source(Format.DICOM_SERIES if path.is_dir() else Format.NIFTI, paths)
    voxels = decoded.values.size
else:
    dataset = Dataset.objects.create(name="bench", origin=Origin.REAL, licence="none")
    report = import_path(path, ImportOptions(modality="CT", dataset=dataset, layout=Layout.VOLUME))
    assert report.items_created == 1, report.summary()
    voxels = None
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"baseline_kb": baseline, "peak_kb": peak, "voxels": voxels}))
"""


def run(code, *args, env=None):
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return done.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[160, 512, 512], metavar=("DEPTH", "ROWS", "COLS"))
    parser.add_argument("--write")
    args = parser.parse_args()
    depth, rows, cols = args.shape
    voxels = depth * rows * cols
    results = []
    for kind in ("nifti-int16", "nifti-float32", "dicom-series"):
        with tempfile.TemporaryDirectory(prefix="import-memory-") as tmp:
            tmp = Path(tmp)
            (tmp / "in").mkdir()
            run(WRITE, kind, tmp / "in", depth, rows, cols)
            source = tmp / "in" / ("series" if kind == "dicom-series" else "volume.nii.gz")
            row = {"kind": kind}
            for what in ("decode", "import"):
                data = tmp / f"data-{what}"
                env = {**os.environ, "READERSTUDY_DATA_DIR": str(data), "DJANGO_SETTINGS_MODULE": "readerstudy.settings",
                       "DJANGO_SECRET_KEY": "import-memory-bench-key-0123456789", "PYTHONPATH": str(ROOT)}
                env.pop("DATABASE_URL", None)
                out = json.loads(run(MEASURE, what, source, env=env).strip().splitlines()[-1])
                row[what] = (out["peak_kb"] - out["baseline_kb"]) * 1024 / voxels
            results.append(row)
    lines = [
        f"## Import memory per voxel — {datetime.date.today()}",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs. Command: `.venv/bin/python bench/import_memory_bench.py "
        f"--shape {depth} {rows} {cols}` ({voxels:,} voxels). Peak resident set above the set-up's, per voxel.",
        "",
        "| source | decoding, bytes/voxel | whole import, bytes/voxel |",
        "|---|---|---|",
    ]
    lines += [f"| {r['kind']} | {r['decode']:.1f} | {r['import']:.1f} |" for r in results]
    lines.append("")
    publish(lines, args.write)


if __name__ == "__main__":
    main()
