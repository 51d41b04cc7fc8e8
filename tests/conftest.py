import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.db import connection

from readerstudy.imaging import storage
from readerstudy.imaging.importing import ImportOptions, import_path
from readerstudy.imaging.models import Dataset, Origin

DATA = Path(__file__).parent / "data"
DEMO = Path(__file__).resolve().parent.parent / "data" / "demo"
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def pydicom_file(name: str) -> Path:
    """A test file shipped inside the pydicom wheel (never downloaded)."""
    path = PYDICOM_FILES / name
    assert path.exists(), f"{name} is not in the installed pydicom wheel"
    return path


def pytest_report_header(config):
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    return f"database backend: {engine}"


@pytest.fixture(autouse=True)
def pool_dirs(settings, tmp_path):
    """Every test gets its own pool and upload folders."""
    settings.POOL_ROOT = tmp_path / "pool"
    settings.UPLOAD_ROOT = tmp_path / "uploads"
    return settings.POOL_ROOT


@pytest.fixture
def real_dataset(db):
    return Dataset.objects.create(name="test scans", origin=Origin.REAL, licence="CC0")


@pytest.fixture
def import_file(real_dataset):
    """Import a path; returns the ImportReport."""

    def run(path, modality="MR", **kwargs):
        return import_path(Path(path), ImportOptions(modality=modality, dataset=real_dataset, **kwargs))

    return run


def master_of(item) -> np.ndarray:
    return np.asarray(storage.load_master(item.master_file))


def copy_to(tmp_path: Path, src: Path, name: str | None = None) -> Path:
    dst = tmp_path / (name or src.name)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


def pool_files(pool_root: Path) -> tuple[list[Path], list[Path]]:
    """(master files, rendition folders) actually on disk, ignoring nothing."""
    masters = sorted((pool_root / "masters").glob("*")) if (pool_root / "masters").exists() else []
    renditions = sorted((pool_root / "renditions").glob("*")) if (pool_root / "renditions").exists() else []
    return masters, renditions


requires_sqlite = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite-specific")
