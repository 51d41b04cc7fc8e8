"""Importing image files into the pool: real scans, or an external synthetic set with its generator.

The command line, the upload page and tasks all call this.

A *source* is one file, or the files of one DICOM series found in a folder. Each
source is imported on its own, all or nothing: a bad source yields exactly one
error, writes no row and no file, and the batch carries on with the next. The
rows of consecutive good sources are written in one transaction (`_commit_batch`).
"""

import errno
import hashlib
import logging
import os
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import DatabaseError

from readerstudy.jobs.progress import NullProgress

from . import sources
from .canonical import BlankImage
from .decoders import DecodedImage, Format, UnreadableImage, decode_source, sniff
from .decoders.base import reason_of
from .decoders.dicom import read_header
from .models import Dataset, Modality, Origin, PoolItem
from .pool import commit_pool_items, stage_pool_item
from . import storage
from .storage import pool_files

logger = logging.getLogger(__name__)


class Layout:
    AUTO = "auto"  # a volume if the source has several slices, else a 2D image
    VOLUME = "volume"
    SLICES = "slices"  # each chosen slice becomes a 2D item
    CHOICES = [(AUTO, "Automatic"), (VOLUME, "One volume"), (SLICES, "Separate 2D slices")]


@dataclass
class ImportOptions:
    modality: str
    dataset: Dataset
    body_part: str = ""
    layout: str = Layout.AUTO
    slices: int | None = None  # with Layout.SLICES: how many evenly spaced slices (None: all)
    created_by: object = None
    job: object = None
    generator: object = None  # set for an external synthetic set: items become synthetic
    prompt: str = ""
    # CT not in Hounsfield units (a PNG, a secondary capture): scaled like MR, and recorded as such.
    uncalibrated_ct: bool = False

    @property
    def origin(self) -> str:
        return Origin.SYNTHETIC if self.generator is not None else Origin.REAL

    def __post_init__(self):
        if self.modality not in Modality.values:
            raise ValueError(f"modality must be one of {', '.join(Modality.values)}, got {self.modality!r}")
        if self.layout not in (Layout.AUTO, Layout.VOLUME, Layout.SLICES):
            raise ValueError(f"layout must be auto, volume or slices, got {self.layout!r}")
        if self.slices is not None and self.slices < 1:
            raise ValueError("the number of slices must be at least 1")
        if self.dataset.origin != self.origin:
            raise ValueError(
                f"data set {self.dataset.name!r} holds {self.dataset.get_origin_display().lower()} images;"
                f" these are {self.origin} images"
            )


@dataclass
class Source:
    label: str
    fmt: str | None
    paths: list[Path]
    error: str | None = None


@dataclass
class Outcome:
    source: str
    status: str  # imported | skipped | failed
    message: str
    item_ids: list[int] = field(default_factory=list)


@dataclass
class ImportReport:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def items_created(self) -> int:
        return sum(len(o.item_ids) for o in self.outcomes if o.status == "imported")

    def summary(self) -> str:
        return (
            f"{self.count('imported')} imported ({self.items_created} pool items), "
            f"{self.count('skipped')} already in the pool, {self.count('failed')} failed"
        )

    def as_dict(self) -> dict:
        return {"summary": self.summary(), "outcomes": [asdict(o) for o in self.outcomes]}


# --- discovery ----------------------------------------------------------------


def discover_sources(path: Path, root_label: str | None = None) -> list[Source]:
    """The sources under `path`: one per file, except single-frame DICOMs sharing a series.

    `root_label` names the folder itself in messages (an upload's storage folder means nothing to people).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if not path.is_dir():
        return [_file_source(path, path.name)]
    files = sorted(
        Path(root) / name
        for root, dirs, names in os.walk(path)
        for name in names
        if not name.startswith(".") and not any(part.startswith(".") for part in Path(root).relative_to(path).parts)
    )
    sources, series = [], {}
    for f in files:
        label = str(f.relative_to(path))
        source = _file_source(f, label)
        if source.fmt == Format.DICOM and source.error is None:
            try:
                key = _series_key(f)
            except UnreadableImage as exc:
                sources.append(Source(label, None, [f], error=str(exc)))
                continue
            if key is not None:
                series.setdefault(key, []).append(source)
                continue
        sources.append(source)
    stacks = {}
    for (folder, uid, echo, orientation) in series:
        stacks.setdefault((folder, uid), []).append((echo, orientation))
    for (folder, uid, echo, orientation), members in series.items():
        if len(members) == 1:
            sources.append(members[0])
            continue
        rel = os.path.relpath(folder, path)
        parts = stacks[(folder, uid)]
        what = [f"series of {len(members)} files"]
        if len({e for e, _ in parts}) > 1:
            what.append(f"echo {echo}")
        if len({o for _, o in parts}) > 1:
            what.append(f"plane {sorted({o for _, o in parts}).index(orientation) + 1} of {len({o for _, o in parts})}")
        label = f"{(root_label or path.name) if rel == '.' else rel}/ ({', '.join(what)})"
        sources.append(Source(label, Format.DICOM_SERIES, [m.paths[0] for m in members]))
    return sorted(sources, key=lambda s: s.label)


def _file_source(path: Path, label: str) -> Source:
    """A source for one file, or a failed one that says why it cannot be read (never opening a special file)."""
    try:
        info = path.stat()  # follows links; a loop or a dangling link raises
    except OSError as exc:
        if path.is_symlink():
            reason = "a symbolic link loop" if exc.errno == errno.ELOOP else "a symbolic link to nothing"
            return Source(label, None, [path], error=f"skipped: {reason}")
        return Source(label, None, [path], error=f"cannot read file: {exc.strerror or exc}")
    if not stat.S_ISREG(info.st_mode):
        kind = ("a named pipe" if stat.S_ISFIFO(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode)
                else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "a special file")
        return Source(label, None, [path], error=f"skipped: not a regular file ({kind})")
    try:
        return Source(label, sniff(path), [path])
    except UnreadableImage as exc:
        return Source(label, None, [path], error=str(exc))


def _series_key(path: Path):
    """(folder, SeriesInstanceUID) for single-frame DICOM images, else None; UnreadableImage for a header
    that cannot be grouped (a malformed frame count, say)."""
    try:
        ds = read_header(path)
    except UnreadableImage:
        return None
    try:
        uid = ds.get("SeriesInstanceUID")
        if not uid or "PixelData" not in ds:
            return None
        frames = ds.get("NumberOfFrames")
        try:
            if int(frames or 1) > 1:
                return None
        except (TypeError, ValueError):
            raise UnreadableImage(f"NumberOfFrames {str(frames)!r} is not a whole number") from None
        # One series UID may hold several stacks: echoes of a multi-echo sequence, the planes of a localizer.
        echo = str(ds.get("EchoNumbers") or "")
        try:
            orientation = tuple(round(float(v), 2) for v in ds.ImageOrientationPatient)
        except (AttributeError, TypeError, ValueError):
            orientation = ()
        return (str(path.parent), str(uid), echo, orientation)
    except UnreadableImage:
        raise
    except Exception as exc:  # a malformed element read while grouping
        raise UnreadableImage(f"not a readable DICOM file ({reason_of(exc)})") from None


# --- import -------------------------------------------------------------------


def import_path(path: Path, options: ImportOptions, progress=None, root_label: str | None = None) -> ImportReport:
    """Import every source under `path` (a file or a folder)."""
    return import_sources(discover_sources(Path(path), root_label), options, progress)


# Sources whose files are written are committed together (one transaction for their rows), up to this
# many or this long after the first of them: per-source transactions were a fifth of an import's time.
BATCH_SOURCES = 50
BATCH_SECONDS = 1.0


@dataclass
class _Staged:
    """A source whose files are in the pool, waiting for its rows (`_commit_batch`)."""

    source: Source
    staged: list
    keys: set
    note: str
    warnings: str


def import_sources(sources: list[Source], options: ImportOptions, progress=None) -> ImportReport:
    """Import every source, each all or nothing; outcomes in the order of `sources`."""
    progress = progress or NullProgress()
    report = ImportReport()
    progress.partial_result = report
    progress.start(len(sources))
    batch: list[_Staged] = []
    since = [0.0]

    def finish(outcome: Outcome) -> None:
        report.outcomes.append(outcome)
        progress.advance(1, f"{outcome.source}: {outcome.message}")

    def flush() -> None:
        for outcome in _commit_batch(batch):
            finish(outcome)
        batch.clear()

    for source in sources:
        try:
            progress.check_cancelled()
        except BaseException:
            flush()  # what is written is kept: the report (and a retry) see it
            raise
        result = _stage_source(source, options, {k for pending in batch for k in pending.keys}, flush)
        if isinstance(result, Outcome):
            flush()
            finish(result)
            continue
        if not batch:
            since[0] = time.monotonic()
        batch.append(result)
        if len(batch) >= BATCH_SOURCES or time.monotonic() - since[0] >= BATCH_SECONDS:
            flush()
    flush()
    return report


def _stage_source(source: Source, options: ImportOptions, batch_keys: set, flush) -> "Outcome | _Staged":
    """Decode, check and write the files of one source (no rows yet), or its failed/skipped Outcome.

    `batch_keys` are the (source hash, locator) pairs written but not yet committed: a duplicate of one
    of them calls `flush` first, so that it is found in the pool as a duplicate of a committed item.
    """
    if source.error:
        return Outcome(source.label, "failed", source.error)
    try:
        for p in source.paths:
            size = p.stat().st_size
            if size > settings.IMPORT_MAX_FILE_BYTES:
                raise UnreadableImage(
                    f"{p.name} is {size:,} bytes; the limit is {settings.IMPORT_MAX_FILE_BYTES:,}"
                    " (READERSTUDY_IMPORT_MAX_FILE_BYTES)"
                )
        digest = source_sha256(source.paths)
        decoded = decode_source(source.fmt, source.paths)
        check_modality(decoded, options)
        plan = _plan_items(decoded, options)
        if any((digest, locator) in batch_keys for locator, _ in plan):
            flush()
        existing = set(
            PoolItem.objects.filter(dataset=options.dataset, source_sha256=digest).values_list(
                "source_locator", flat=True
            )
        )
        todo = [(locator, idx) for locator, idx in plan if locator not in existing]
        if not todo:
            return Outcome(source.label, "skipped", "already in the pool")
        staged = _stage_items(source, options, decoded, digest, todo)
    except UnreadableImage as exc:
        return Outcome(source.label, "failed", str(exc))
    except MemoryError:
        return Outcome(source.label, "failed", "not enough memory to decode this image")
    except Exception as exc:  # whatever a decoder raises, this source fails and the batch goes on
        logger.warning("importing %s failed", source.label, exc_info=True)
        return Outcome(source.label, "failed", f"cannot be imported: {reason_of(exc)}")
    skipped = len(plan) - len(todo)
    return _Staged(source, staged, {(digest, locator) for locator, _ in todo},
                   f" ({skipped} already in the pool)" if skipped else "",
                   "".join(f"; warning: {w}" for w in decoded.info.get("warnings", [])))


def _commit_batch(batch: list[_Staged]) -> list[Outcome]:
    """The rows of written sources in one transaction; if that fails, source by source, so one bad source
    fails alone (its files removed) and the others go in. A lost job attempt commits nothing."""
    if not batch:
        return []
    try:
        items = commit_pool_items([entry for pending in batch for entry in pending.staged])
    except DatabaseError as exc:
        if len(batch) > 1:
            return [outcome for pending in batch for outcome in _commit_batch([pending])]
        _remove_staged(batch)
        logger.warning("importing %s failed", batch[0].source.label, exc_info=True)
        return [Outcome(batch[0].source.label, "failed", f"cannot be imported: {reason_of(exc)}")]
    except BaseException:
        _remove_staged(batch)
        raise
    outcomes, made = [], iter(items)
    for pending in batch:
        ids = [next(made).pk for _ in pending.staged]
        outcomes.append(Outcome(pending.source.label, "imported", f"{len(ids)} item(s) created{pending.note}"
                                f"{pending.warnings}", ids))
    return outcomes


def _remove_staged(batch: list[_Staged]) -> None:
    for pending in batch:
        for entry in pending.staged:
            storage.remove_path(storage.masters_dir() / entry.fields["master_file"])


# DICOM Modality codes of each platform modality (projection radiography for XR).
MODALITY_CODES = {Modality.CT: {"CT"}, Modality.MR: {"MR"},
                  Modality.XR: {"CR", "DX", "DR", "RG", "RF", "XA", "MG", "PX", "IO", "DF", "XR"}}
NOT_IMAGES = {"SEG": "a segmentation", "RTDOSE": "a radiotherapy dose grid", "RTSTRUCT": "a structure set",
              "RTPLAN": "a radiotherapy plan", "RTRECORD": "a treatment record", "SR": "a structured report",
              "PR": "a presentation state", "KO": "a key-object selection", "REG": "a registration",
              "ECG": "a waveform", "DOC": "a document", "PLAN": "a plan"}
OTHER_IMAGING = {"US": "ultrasound", "NM": "nuclear medicine", "PT": "PET", "OP": "ophthalmic photography",
                 "OPT": "optical coherence tomography", "SM": "slide microscopy", "ES": "endoscopy",
                 "XC": "photography", "IVUS": "intravascular ultrasound", "OCT": "optical coherence tomography"}
NOT_IMAGE_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4": "a segmentation", "1.2.840.10008.5.1.4.1.1.481.2":
                         "a radiotherapy dose grid", "1.2.840.10008.5.1.4.1.1.481.3": "a structure set"}
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # and its multi-frame variants (…7.1 to …7.4)


def check_modality(decoded: DecodedImage, options: ImportOptions) -> None:
    """Refuse what is not an image of the modality it is imported as (UnreadableImage says why).

    A DICOM file's own Modality and SOP class decide: non-images (SEG, RT objects, reports) never; a CT,
    MR or X-ray file only as that modality; other imaging (US, NM, PET...) not at all unless it is a
    secondary capture. CT must be in Hounsfield units unless `uncalibrated_ct` says otherwise.
    """
    info = decoded.info
    if info.get("format") == "DICOM":
        code = str(info.get("dicom_modality") or "").upper()
        sop = str(info.get("sop_class") or "")
        if code in NOT_IMAGES or sop in NOT_IMAGE_SOP_CLASSES:
            what = NOT_IMAGES.get(code) or NOT_IMAGE_SOP_CLASSES[sop]
            raise UnreadableImage(f"{what} (DICOM Modality {code or 'none'}) is not an image to read")
        family = next((m for m, codes in MODALITY_CODES.items() if code in codes), None)
        if family is not None and family != options.modality:
            raise UnreadableImage(f"the file is {family} (DICOM Modality {code}), not {options.modality}: "
                                  f"import it as {family}")
        if code in OTHER_IMAGING and not sop.startswith(SECONDARY_CAPTURE):
            raise UnreadableImage(f"the file is {OTHER_IMAGING[code]} (DICOM Modality {code}); this platform "
                                  "reads X-ray, CT and MR")
    if options.modality == Modality.CT and not decoded.calibrated:
        if not options.uncalibrated_ct:
            raise UnreadableImage("not in Hounsfield units (neither DICOM Modality CT nor Rescale Type HU; PNG, "
                                  "JPEG and TIFF have none): import it as CT only with the uncalibrated-CT "
                                  "option, which scales it like MR and records that")
        info["uncalibrated_ct"] = True


def _plan_items(decoded: DecodedImage, options: ImportOptions) -> list[tuple[str, slice]]:
    """[(source_locator, slice index range)] for the items this source becomes."""
    depth = decoded.values.shape[0]
    if options.layout == Layout.VOLUME and depth < 2:
        raise UnreadableImage("has a single slice; it cannot be imported as a volume")
    if options.layout == Layout.SLICES or depth == 1:
        if depth == 1:
            return [("", slice(0, 1))]
        candidates = slices_with_content(decoded.values)
        count = min(options.slices or len(candidates), len(candidates))
        positions = np.linspace(0, len(candidates) - 1, count)
        indices = sorted({int(candidates[int(round(p))]) for p in positions})
        return [(f"slice {i + 1} of {depth}", slice(i, i + 1)) for i in indices]
    return [("", slice(0, depth))]


CONTENT_FRACTION = 0.35


def slices_with_content(values: np.ndarray) -> np.ndarray:
    """Indices of slices whose spread is at least 35% of the busiest slice's.

    Volumes, templates especially, often begin and end with empty slices that
    would make useless 2D cases.
    """
    spread = values.reshape(values.shape[0], -1).std(axis=1)
    keep = np.flatnonzero(spread >= CONTENT_FRACTION * spread.max())
    return keep if keep.size else np.arange(values.shape[0])


def content_slices(codes: np.ndarray, limit: int) -> np.ndarray:
    """Slices with content of a (depth, rows, cols) array, at most `limit` (0: all), evenly spaced."""
    indices = np.arange(1) if codes.shape[0] == 1 else slices_with_content(codes.astype(np.float32))
    if limit and len(indices) > limit:
        indices = indices[np.linspace(0, len(indices) - 1, limit).round().astype(int)]
    return indices


def _stage_items(source, options, decoded, digest, todo) -> list:
    """The files of the planned parts of one decoded source, written (or none of them); no rows yet."""
    group = decoded.source_group or sources.file_group(digest)
    with pool_files():
        staged = []
        for locator, index in todo:
            part = decoded.values[index]
            try:
                staged.append(stage_pool_item(
                    values=part,
                    hounsfield=options.modality == Modality.CT and decoded.calibrated,
                    inverted=decoded.inverted,
                    step=decoded.quantisation_step,
                    modality=options.modality,
                    origin=options.origin,
                    generator=options.generator,
                    prompt=options.prompt,
                    dataset=options.dataset,
                    body_part=options.body_part,
                    source_name=source.label[:500],
                    source_sha256=digest,
                    source_locator=locator,
                    source_group=group,
                    native_shape=list(part.shape),
                    native_spacing_mm=decoded.spacing_mm,
                    source_info=decoded.info,
                    created_by=options.created_by,
                    import_job=options.job,
                ))
            except BlankImage as exc:
                raise UnreadableImage(str(exc)) from None
        # Every file is written before the (short) transaction that adds the rows (`_commit_batch`).
        return staged


def source_sha256(paths: list[Path]) -> str:
    """SHA-256 of a file; for a series, of its files' digests in name order."""
    digests = []
    for p in sorted(paths):
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        digests.append(h.hexdigest())
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()
