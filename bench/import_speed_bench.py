"""Import speed: single-slice CT files through the importer beside a bare pydicom loop, in one run.

Run by hand (not in CI), from the repository root:

    .venv/bin/python bench/import_speed_bench.py [--files 200] [--size 512] [--write docs/benchmarks.md]

Writes `--files` CT files (each its own series, int16, a phantom with noise), then times, on the
same files:
- bare loop: pydicom.dcmread, pixel_array, apply_modality_lut (HU), np.save of the result as int16 --
  the least an importer must do per file;
- ours in-process: readerstudy.imaging.importing.import_path (hashing, decoding, checks, master array,
  pool rows), Django already set up; best of `--rounds` (the bare loop too, before and after set-up);
- ours as a command: `manage.py import_images` in a fresh process (start-up included), into another
  fresh data folder.
"""

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# In memory (tmpfs) by default: writing 100 MB to this machine's disk takes 0.1-0.35 s from run to run,
# which would measure the disk, not the import. BENCH_TMP=/some/folder to measure on a disk.
tempfile.tempdir = os.environ.get("BENCH_TMP") or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "readerstudy.settings")
os.environ["READERSTUDY_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-import-")

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.pixels import apply_modality_lut  # noqa: E402
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid  # noqa: E402
from report import cpu_name, publish  # noqa: E402


def write_files(folder: Path, count: int, size: int) -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:size, :size]
    body = ((x - size / 2) ** 2 / (0.4 * size) ** 2 + (y - size / 2) ** 2 / (0.3 * size) ** 2) < 1
    for k in range(count):
        stored = np.where(body, 1024 + 40 + rng.normal(0, 20, (size, size)), 0).astype(np.int16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID = "CT", f"bench-{k}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.InstanceNumber, ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [0, 0, 0]
        ds.PixelSpacing, ds.SliceThickness, ds.RescaleSlope, ds.RescaleIntercept = [0.7, 0.7], 1.5, 1, -1024
        ds.Rows = ds.Columns = size
        ds.PixelData = stored.tobytes()
        ds.save_as(folder / f"ct{k:04d}.dcm", enforce_file_format=True)


def bare_loop(files: list[Path], out: Path) -> None:
    for i, path in enumerate(files):
        ds = pydicom.dcmread(path)
        hu = apply_modality_lut(ds.pixel_array, ds)
        np.save(out / f"{i}.npy", hu.astype(np.int16))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-import-files-"))
    write_files(folder, args.files, args.size)
    files = sorted(folder.glob("*.dcm"))

    # Best of `--rounds` each (writing files to disk here varies by a factor of two from run to run). The
    # bare loop runs before Django is set up, as a plain script would; it is also timed after, beside ours.
    def bare_best() -> float:
        times = []
        for _ in range(args.rounds):
            out = Path(tempfile.mkdtemp(prefix="bench-import-bare-"))
            start = time.perf_counter()
            bare_loop(files, out)
            times.append(time.perf_counter() - start)
            shutil.rmtree(out)
        return min(times)

    bare_s = bare_best()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from readerstudy.imaging.importing import ImportOptions, import_path
    from readerstudy.imaging.models import Dataset as PoolDataset
    from readerstudy.imaging.models import Origin

    bare_after_s = bare_best()
    ours_times = []
    for round_ in range(args.rounds):
        dataset = PoolDataset.objects.create(name=f"bench {round_}", origin=Origin.REAL, licence="none")
        start = time.perf_counter()
        report = import_path(folder, ImportOptions(modality="CT", dataset=dataset))
        ours_times.append(time.perf_counter() - start)
        assert report.count("imported") == args.files, report.summary()
    ours_s = min(ours_times)

    env = {**os.environ, "READERSTUDY_DATA_DIR": tempfile.mkdtemp(prefix="bench-import-command-")}
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"], env=env, check=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "import_images", str(folder), "--modality", "CT",
                    "--dataset", "bench", "--licence", "none", "--no-progress"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    command_s = time.perf_counter() - start

    rate = lambda seconds: args.files / seconds  # noqa: E731
    lines = [
        f"## Import speed — {datetime.date.today()}",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs; SQLite; files and pool in {tempfile.gettempdir()}. Command: `.venv/bin/python bench/import_speed_bench.py "
        f"--files {args.files} --size {args.size} --rounds {args.rounds}`: {args.files} single-slice "
        f"{args.size}x{args.size} int16 CT files, each its own series, the same files for every row; the bare loop "
        f"and the in-process import taken in turn, best of {args.rounds} rounds each (a new data set each round).",
        "",
        "| run | seconds | files/s | / bare loop |",
        "|---|---|---|---|",
        f"| bare pydicom loop (read, decode, HU, np.save) | {bare_s:.2f} | {rate(bare_s):.0f} | 1.0x |",
        f"| the same loop after Django is set up | {bare_after_s:.2f} | {rate(bare_after_s):.0f} | "
        f"{bare_after_s / bare_s:.1f}x |",
        f"| ours, in-process (`import_path`) | {ours_s:.2f} | {rate(ours_s):.0f} | {ours_s / bare_s:.1f}x |",
        f"| ours, `manage.py import_images` (fresh process, start-up included) | {command_s:.2f} | "
        f"{rate(command_s):.0f} | {command_s / bare_s:.1f}x |",
        "",
    ]
    publish(lines, args.write)
    for path in (folder, Path(os.environ["READERSTUDY_DATA_DIR"]), Path(env["READERSTUDY_DATA_DIR"])):
        shutil.rmtree(path, ignore_errors=True)  # in memory (tmpfs): a few hundred MB per run


if __name__ == "__main__":
    main()
