"""The importer's outcome for every file that installed packages ship as test data (pydicom's test files,
pydicom-data, nibabel's test data): decoded (with its shape and modality) or refused (with its message).

`tests/test_import_corpus.py` compares these outcomes with the reviewed table `tests/data/import_corpus.csv`,
so any change in what real-world files become shows up as a difference to look at. After a deliberate
change, write the table again and review its diff:

    .venv/bin/python -m tests.import_corpus --write
"""

import csv
import importlib.util
import io
import sys
from pathlib import Path
from types import SimpleNamespace

TABLE = Path(__file__).parent / "data" / "import_corpus.csv"
COLUMNS = ["package", "source", "outcome", "detail"]


def roots() -> list[tuple[str, Path]]:
    """(package, folder) for each installed package that ships test images."""
    found = []
    for package, module, folder in (("pydicom", "pydicom", "data/test_files"), ("pydicom-data", "data_store", "data"),
                                    ("nibabel", "nibabel", "tests/data")):
        spec = importlib.util.find_spec(module)
        if spec and spec.origin and (Path(spec.origin).parent / folder).is_dir():
            found.append((package, Path(spec.origin).parent / folder))
    return found


def _modality(decoded) -> str:
    """What a person would import the file as: the modality its DICOM header says, else MR for NIfTI and
    X-ray for pictures (MR for DICOM of other or no modality, which the importer then judges)."""
    from readerstudy.imaging.importing import MODALITY_CODES
    from readerstudy.imaging.models import Modality

    code = str(decoded.info.get("dicom_modality") or "").upper()
    family = next((m for m, codes in MODALITY_CODES.items() if code in codes), None)
    if family:
        return family
    fmt = decoded.info.get("format")
    return Modality.XR if fmt not in ("DICOM", "NIfTI") else Modality.MR


def outcome(source) -> dict:
    from readerstudy.imaging.decoders import UnreadableImage, decode_source
    from readerstudy.imaging.importing import ImportOptions, check_modality

    if source.error:
        return {"outcome": "refused", "detail": source.error}
    try:
        decoded = decode_source(source.fmt, source.paths)
        modality = _modality(decoded)
        check_modality(decoded, ImportOptions(modality=modality, dataset=SimpleNamespace(origin="real")))
    except UnreadableImage as exc:
        return {"outcome": "refused", "detail": " ".join(str(exc).split())[:160]}
    except MemoryError:
        return {"outcome": "refused", "detail": "not enough memory to decode this image"}
    except Exception as exc:  # the importer turns this into a failed file too, but it is a decoder gap
        return {"outcome": "error", "detail": f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"}
    depth, rows, cols = decoded.values.shape
    orientation = decoded.info.get("orientation") or ""
    return {"outcome": "decoded", "detail": " ".join(filter(None, [f"{depth}x{rows}x{cols}", modality, orientation]))}


def outcomes() -> list[dict]:
    from readerstudy.imaging.importing import discover_sources

    rows = []
    for package, folder in roots():
        # One file at a time, as a person importing that file would: these folders hold many copies of
        # one image (one per transfer syntax) under one series UID, which a folder import refuses as such.
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            label = str(path.relative_to(folder))
            for source in discover_sources(path, root_label=label):
                rows.append({"package": package, "source": label, **outcome(source)})
    return sorted(rows, key=lambda r: (r["package"], r["source"]))


def as_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def main():
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()
    text = as_csv(outcomes())
    if "--write" in sys.argv:
        TABLE.write_text(text)
        print(f"wrote {TABLE} ({text.count(chr(10)) - 1} sources)")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
