"""Adding items to the image pool: the one path for real imports and generated images alike."""

import numpy as np
from django.conf import settings
from django.db import transaction

from readerstudy.jobs.progress import assert_attempt

from . import canonical, sources, storage
from .models import Dimensionality, Origin, PoolItem, Rendition


def default_preset(modality: str, dimensionality: str, shape=None) -> tuple[int, int, int]:
    """(rows, cols, depth) of the rendition made when an item enters the pool (never larger than `shape`)."""
    preset = settings.CANONICAL_DEFAULT_PRESETS[modality]
    size = int(preset["matrix"])
    depth = 1 if dimensionality == Dimensionality.IMAGE else int(preset["depth"])
    if shape is not None:
        size, depth = min(size, min(shape[1:])), min(depth, shape[0])
    return size, size, depth


def create_pool_item(*, values: np.ndarray, modality: str, origin: str, dataset, hounsfield: bool = False,
                     inverted: bool = False, step: float = 0.0, **provenance) -> PoolItem:
    """Store an image (float values, shape (depth, rows, cols)) as a pool item with its default rendition.

    Every item, imported or generated, comes through here, so one intensity rule
    (`canonical.to_codes`: HU for CT with `hounsfield`, robust percentiles
    otherwise, dequantised) and one framing rule apply whatever the origin.
    `provenance` holds the remaining PoolItem fields (source hash, generator,
    seed, prompt, native shape...); `step` is the grid the source values lie on
    (see `to_codes`). Rows and files are written together or not at all.
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
    with storage.pool_transaction():
        item = PoolItem.objects.create(
            modality=modality,
            origin=origin,
            dataset=dataset,
            dimensionality=dimensionality,
            master_file=storage.save_master(codes),
            master_shape=list(codes.shape),
            content_sha256=content,
            **provenance,
        )
        ensure_rendition(item, *default_preset(modality, dimensionality, codes.shape))
        # Last, so the job row is locked only for the commit: a worker whose job was recovered and
        # handed to another attempt commits no item.
        assert_attempt(provenance.get("generation_job") or provenance.get("import_job"))
    return item


def find_rendition(item: PoolItem, rows: int, cols: int, depth: int) -> Rendition | None:
    """The item's canonical series at (rows, cols, depth) if it has been written."""
    return item.renditions.filter(rows=rows, cols=cols, depth=depth).first()


def ensure_rendition(item: PoolItem, rows: int, cols: int, depth: int) -> Rendition:
    """The item's canonical series at (rows, cols, depth), written on first request."""
    existing = find_rendition(item, rows, cols, depth)
    if existing:
        return existing
    with storage.pool_transaction():
        token, sizes = _write_series(item, rows, cols, depth)
        return Rendition.objects.create(
            item=item, rows=rows, cols=cols, depth=depth, directory=token, file_bytes=sizes
        )


def _write_series(item: PoolItem, rows: int, cols: int, depth: int) -> tuple[str, list[int]]:
    """Render the item's master at (rows, cols, depth) into a new rendition folder, registered with the
    enclosing pool_transaction; returns (folder token, file sizes)."""
    codes = canonical.render(storage.load_master(item.master_file), item.modality, rows, cols, depth)
    token = storage.new_token()
    directory = storage.renditions_dir() / token
    sizes = canonical.write_canonical_series(codes, item.modality, directory)
    storage.register_written(directory)
    return token, sizes


def rerender(rendition: Rendition) -> Rendition:
    """Write the rendition again with today's canonical writer (same codes from the master, current tags)
    into a new folder, point the row at it and remove the old folder once that commits.

    For renditions written by an older writer (tags, file meta): served files of one study must all come
    from one writer, or the leak audit tells them apart.
    """
    old = storage.renditions_dir() / rendition.directory
    with storage.pool_transaction():
        token, sizes = _write_series(rendition.item, rendition.rows, rendition.cols, rendition.depth)
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
