"""Adding items to the image pool: the one path for real imports and generated images alike."""

from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction

from readerstudy.jobs.progress import assert_attempt

from . import canonical, sources, storage
from .models import Dimensionality, Origin, PoolItem, Rendition


@dataclass(frozen=True)
class StagedItem:
    """An image whose master is written into the pool, waiting for its row (`commit_pool_items`)."""

    fields: dict


def stage_pool_item(*, values: np.ndarray, modality: str, origin: str, dataset, hounsfield: bool = False,
                    inverted: bool = False, step: float = 0.0, **provenance) -> StagedItem:
    """Encode an image (float values, shape (depth, rows, cols)) and write its master array into the
    pool, without a database row; call inside `storage.pool_files()`. Renditions (the served series)
    are written when a study needs them (`ensure_rendition`, at preparation), at the study's framing.

    Every item, imported or generated, comes through here, so one intensity rule
    (`canonical.to_codes`: HU for CT with `hounsfield`, robust percentiles
    otherwise, dequantised) and one framing rule apply whatever the origin.
    `provenance` holds the remaining PoolItem fields (source hash, generator,
    seed, prompt, native shape...); `step` is the grid the source values lie on
    (see `to_codes`).
    """
    values = np.asarray(values)
    if values.ndim != 3 or min(values.shape) < 1:
        raise ValueError(f"values must be a non-empty (depth, rows, cols) array, got shape {values.shape}")
    if origin == Origin.REAL and provenance.get("generator") is not None:
        raise ValueError("real items have no generator")
    if origin == Origin.SYNTHETIC and provenance.get("generator") is None:
        raise ValueError("synthetic items must name their generator")
    dimensionality = Dimensionality.VOLUME if values.shape[0] > 1 else Dimensionality.IMAGE
    provenance.setdefault("native_shape", list(values.shape))
    master_shape = canonical.fit_within(values.shape, settings.POOL_MASTER_MAX_SIDE)
    codes = canonical.to_codes(values, modality, hounsfield=hounsfield, inverted=inverted, step=step,
                              shape=master_shape)
    content = sources.content_hash(codes)
    provenance["source_group"] = (provenance.get("source_group") or sources.default_group(provenance)
                                  or f"content:{content}")
    master_file = storage.save_master(codes)
    fields = dict(modality=modality, origin=origin, dataset=dataset, dimensionality=dimensionality,
                  master_file=master_file, master_shape=list(codes.shape), content_sha256=content, **provenance)
    return StagedItem(fields)


def commit_pool_items(staged: list[StagedItem]) -> list[PoolItem]:
    """The rows of staged items, all in one short transaction (one INSERT for all of them)."""
    with transaction.atomic():
        items = PoolItem.objects.bulk_create([PoolItem(**entry.fields) for entry in staged])
        # Last, so the job row is locked only for the commit: a worker whose job was recovered and
        # handed to another attempt commits no item.
        jobs = {}
        for entry in staged:
            job = entry.fields.get("generation_job") or entry.fields.get("import_job")
            jobs[id(job)] = job
        for job in jobs.values():
            assert_attempt(job)
    return items


def create_pool_item(**image) -> PoolItem:
    """Store one image as a pool item (`stage_pool_item`'s arguments).

    Files are written before the transaction, which writes only the rows; rows and files
    are kept together or not at all.
    """
    with storage.pool_files():
        return commit_pool_items([stage_pool_item(**image)])[0]


def find_rendition(item: PoolItem, rows: int, cols: int, depth: int) -> Rendition | None:
    """The item's canonical series at (rows, cols, depth) if it has been written."""
    return item.renditions.filter(rows=rows, cols=cols, depth=depth).first()


def ensure_rendition(item: PoolItem, rows: int, cols: int, depth: int) -> Rendition:
    """The item's canonical series at (rows, cols, depth), written on first request.

    The files are written before the row's transaction; if another process made the same
    rendition meanwhile, its row wins and these files are removed.
    """
    existing = find_rendition(item, rows, cols, depth)
    if existing:
        return existing
    try:
        with storage.pool_files():
            token, sizes = _write_series(storage.load_master(item.master_file), item.modality, rows, cols, depth)
            with transaction.atomic():
                return Rendition.objects.create(
                    item=item, rows=rows, cols=cols, depth=depth, directory=token, file_bytes=sizes
                )
    except IntegrityError:
        existing = find_rendition(item, rows, cols, depth)
        if existing is None:
            raise
        return existing


def _write_series(codes: np.ndarray, modality: str, rows: int, cols: int, depth: int) -> tuple[str, list[int]]:
    """Render master codes at (rows, cols, depth) into a new rendition folder, registered with the
    enclosing `storage.pool_files`; returns (folder token, file sizes)."""
    rendered = canonical.render(codes, modality, rows, cols, depth)
    token = storage.new_token()
    directory = storage.renditions_dir() / token
    sizes = canonical.write_canonical_series(rendered, modality, directory)
    storage.register_written(directory)
    return token, sizes


def rerender(rendition: Rendition) -> Rendition:
    """Write the rendition again with today's canonical writer (same codes from the master, current tags)
    into a new folder, point the row at it and remove the old folder once that commits.

    For renditions written by an older writer (tags, file meta): served files of one study must all come
    from one writer, or the leak audit tells them apart.
    """
    old = storage.renditions_dir() / rendition.directory
    item = rendition.item
    with storage.pool_files():
        token, sizes = _write_series(storage.load_master(item.master_file), item.modality, rendition.rows,
                                     rendition.cols, rendition.depth)
        with transaction.atomic():
            Rendition.objects.filter(pk=rendition.pk).update(directory=token, file_bytes=sizes)
            transaction.on_commit(lambda: storage.remove_path(old))
    rendition.refresh_from_db()
    return rendition


def rendition_files(rendition: Rendition) -> list:
    directory = storage.renditions_dir() / rendition.directory
    return [directory / canonical.slice_filename(i) for i in range(rendition.depth)]


def delete_pool_item(item: PoolItem) -> None:
    """Delete an item and, once that commits, its master and rendition files."""
    paths = [storage.masters_dir() / item.master_file]
    paths += [storage.renditions_dir() / r.directory for r in item.renditions.all()]
    with transaction.atomic():
        item.delete()
        transaction.on_commit(lambda: [storage.remove_path(p) for p in paths])
