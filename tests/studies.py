"""Builders for study tests: a small pool of real and synthetic items, studies and readers."""

import numpy as np
from django.contrib.auth.models import Group, User

from generation.models import Generator
from generation.pool import add_synthetic_item
from readerstudy.accounts.roles import COORDINATOR, READER
from readerstudy.imaging.models import Dataset, Origin
from readerstudy.imaging.pool import create_pool_item
from readerstudy.imaging import canonical
from readerstudy.studies.lifecycle import create_study, open_study, prepare_study
from readerstudy.studies.sampling import assign_readers


def phantom(shape, seed: int) -> np.ndarray:
    """A blob with noise in [0, 1], visible on every slice in each modality's default window.

    Values stay near 0.22-0.34 (about -120...370 HU for CT), distinct per seed and slice.
    """
    rng = np.random.default_rng(seed)
    rows, cols = shape[-2:]
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    cy, cx = rng.uniform(-0.2, 0.2, 2)
    blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) * rng.uniform(2, 4))
    depth = shape[0] if len(shape) == 3 else 1
    z = np.linspace(-1, 1, depth)[:, None, None] if depth > 1 else np.zeros((1, 1, 1))
    volume = 0.22 + 0.12 * blob[None] * (1 - 0.3 * z**2) + 0.02 * rng.random((depth, rows, cols))
    return volume.reshape(shape).astype(np.float32)


def make_pool(real: dict, synthetic: dict, size: int = 48, depth: int = 12):
    """`real`/`synthetic`: {(modality, "2d"|"3d"): count}. Returns the generator used."""
    dataset, _ = Dataset.objects.get_or_create(name="phantoms", defaults={"origin": Origin.REAL, "licence": "CC0"})
    generator, _ = Generator.objects.get_or_create(
        name="test generator", defaults={"kind": Generator.Kind.EXTERNAL, "modalities": ["XR", "CT", "MR"]}
    )
    seed = 0
    for (modality, dims), n in real.items():
        for _ in range(n):
            shape = (size, size) if dims == "2d" else (depth, size, size)
            values = phantom(shape, seed).reshape((-1, *shape[-2:]))
            if modality == "CT":
                values = values * canonical.CODE_MAX - canonical.CT_HU_OFFSET
            create_pool_item(values=values, hounsfield=modality == "CT", modality=modality, origin=Origin.REAL,
                             dataset=dataset, source_sha256=f"{seed:064x}", source_locator=f"phantom {seed}")
            seed += 1
    for (modality, dims), n in synthetic.items():
        for _ in range(n):
            shape = (size, size) if dims == "2d" else (depth, size, size)
            add_synthetic_item(phantom(shape, seed), modality=modality, generator=generator, seed=seed)
            seed += 1
    return generator


def make_user(username: str, *roles: str) -> User:
    user = User.objects.create_user(username, password="pw-" + username)
    user.groups.set(Group.objects.filter(name__in=roles))
    return user


def readers(n: int, prefix: str = "reader") -> list[User]:
    return [make_user(f"{prefix}{i}", READER) for i in range(1, n + 1)]


def open_study_for(readers_, strata, reading=None, questions=None, seed=7, name="Test study", **config):
    """Create, prepare, assign and open a study; returns it."""
    cfg = {"strata": [{"modality": m, "dimensionality": d, "cases": n} for (m, d), n in strata.items()], **config}
    if reading:
        cfg["reading"] = reading
    if questions:
        cfg["questions"] = questions
    study = create_study(name=name, config=cfg, seed=seed)
    prepare_study(study)
    assign_readers(study, readers_)
    open_study(study)
    return study


def coordinator():
    return make_user("coord", COORDINATOR)
