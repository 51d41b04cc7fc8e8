"""Drawing a study's cases from the pool and each reader's case order, both from stored seeds.

Same pool + same seed gives the same cases; same study seed + reader gives the
same order. Orders are stratified: every block of `block_size` consecutive
regular cases holds each (stratum, truth) group in proportion, so a reader who
stops early has still seen a balanced mix.
"""

from dataclasses import dataclass

import numpy as np
from django.db import transaction

from readerstudy.audit.log import record
from readerstudy.imaging.models import Dimensionality, Origin, PoolItem

from .config import StudyConfigError, stratum_key, validate_config
from .models import AssignedCase, Assignment, Study, StudyCase


@dataclass
class Draw:
    """Pool items chosen for a study, before they are written as StudyCase rows."""

    regular: list  # (PoolItem, stratum key)
    calibration: list
    repeats: list  # PoolItems of regular cases shown twice
    presets: dict  # stratum key -> [rows, cols, depth]


def _split(total: int, fraction: float) -> tuple[int, int]:
    synthetic = int(round(total * fraction))
    return total - synthetic, synthetic


def _eligible(config: dict, modality: str, dimensionality: str, origin: str) -> list[PoolItem]:
    qs = PoolItem.objects.filter(modality=modality, dimensionality=dimensionality, origin=origin)
    if origin == Origin.SYNTHETIC and config["generators"]:
        qs = qs.filter(generator_id__in=config["generators"])
    return list(qs.order_by("pk"))


def _pick(rng, items: list, n: int) -> list:
    return [items[i] for i in sorted(rng.choice(len(items), size=n, replace=False))] if n else []


def draw_cases(study: Study) -> Draw:
    """Choose regular, calibration and repeated cases; raises StudyConfigError listing every shortfall."""
    config = validate_config(study.config)
    reading = config["reading"]
    if not config["strata"]:
        raise StudyConfigError("the study has no cases: give at least one stratum a number of cases")
    rng = np.random.default_rng(study.seed)
    problems, regular, leftovers = [], [], {Origin.REAL: [], Origin.SYNTHETIC: []}
    for s in config["strata"]:
        key = stratum_key(s["modality"], s["dimensionality"])
        for origin, n in zip((Origin.REAL, Origin.SYNTHETIC), _split(s["cases"], config["synthetic_fraction"])):
            pool = _eligible(config, s["modality"], s["dimensionality"], origin)
            if len(pool) < n:
                problems.append(f"{key}: needs {n} {origin} items, the pool has {len(pool)}")
                continue
            chosen = _pick(rng, pool, n)
            regular += [(item, key) for item in chosen]
            taken = {item.pk for item in chosen}
            leftovers[origin] += [(item, key) for item in pool if item.pk not in taken]

    calibration = []
    half = reading["calibration_cases"] // 2
    for origin in (Origin.REAL, Origin.SYNTHETIC):
        if len(leftovers[origin]) < half:
            problems.append(
                f"calibration: needs {half} {origin} items not already used as cases, "
                f"the study's strata have {len(leftovers[origin])}"
            )
        else:
            calibration += _pick(rng, leftovers[origin], half)

    repeats = []
    half = reading["repeat_cases"] // 2
    for origin in (Origin.REAL, Origin.SYNTHETIC):
        candidates = [item for item, _ in regular if item.origin == origin]
        if len(candidates) < half:
            problems.append(f"repeats: needs {half} {origin} regular cases to repeat, the study has {len(candidates)}")
        else:
            repeats += _pick(rng, candidates, half)
    if problems:
        raise StudyConfigError("; ".join(problems))
    return Draw(regular, calibration, repeats, _presets(config, regular + calibration))


def _presets(config: dict, chosen: list) -> dict:
    """Matrix per stratum: the configured size, else the smallest item in it, so no item is upsampled."""
    presets = {}
    for key in {k for _, k in chosen}:
        items = [item for item, k in chosen if k == key]
        size = config["matrix"]["size"] or min(min(item.master_shape[1:]) for item in items)
        depth = 1
        if items[0].dimensionality == Dimensionality.VOLUME:
            depth = config["matrix"]["depth"] or min(item.master_shape[0] for item in items)
        presets[key] = [int(size), int(size), int(depth)]
    return presets


@transaction.atomic
def write_cases(study: Study, draw: Draw) -> None:
    """Replace a draft study's cases (and its readers' orders) with `draw`."""
    study = Study.objects.select_for_update().get(pk=study.pk)
    if study.status != Study.Status.DRAFT:
        raise StudyConfigError("cases can only be drawn while the study is a draft")
    AssignedCase.objects.filter(assignment__study=study).delete()
    study.cases.all().delete()
    regular = StudyCase.objects.bulk_create(
        [StudyCase(study=study, item=item, role=StudyCase.Role.REGULAR) for item, _ in draw.regular]
    )
    by_item = {case.item_id: case for case in regular}
    StudyCase.objects.bulk_create(
        [StudyCase(study=study, item=item, role=StudyCase.Role.CALIBRATION) for item, _ in draw.calibration]
        + [StudyCase(study=study, item=item, role=StudyCase.Role.REPEAT, repeat_of=by_item[item.pk])
           for item in draw.repeats]
    )
    study.config = {**validate_config(study.config), "presets": draw.presets}
    study.save(update_fields=["config"])
    _write_orders(study, list(study.assignments.all()))


def order_seed(study: Study, reader_id: int) -> int:
    """A reader's order seed, derived from the study seed (so orders are reproducible)."""
    return int(np.random.SeedSequence([study.seed % 2**63, reader_id]).generate_state(1, np.uint64)[0] >> 1)


def reader_order(cases: list[StudyCase], config: dict, seed: int) -> list[tuple[StudyCase, int]]:
    """(case, session) in reading order for one reader.

    Calibration cases come first. Regular cases are spread so that each block of
    `block_size` holds every (stratum, truth) group in proportion, then shuffled
    within the block; they are split into `sessions` consecutive sessions. A
    repeat goes into the session after its original (or the end of the last one).
    """
    reading = config["reading"]
    rng = np.random.default_rng(seed)
    by_role = {role.value: sorted((c for c in cases if c.role == role), key=lambda c: c.pk) for role in StudyCase.Role}

    calibration = [by_role["calibration"][i] for i in rng.permutation(len(by_role["calibration"]))]

    groups: dict = {}
    for case in by_role["regular"]:
        item = case.item
        groups.setdefault((item.modality, item.dimensionality, item.origin), []).append(case)
    keyed = []
    for key in sorted(groups):
        members = [groups[key][i] for i in rng.permutation(len(groups[key]))]
        offsets = rng.random(len(members))
        keyed += [((i + offsets[i]) / len(members), case) for i, case in enumerate(members)]
    spread = [case for _, case in sorted(keyed, key=lambda kc: kc[0])]
    regular = []
    for start in range(0, len(spread), reading["block_size"]):
        block = spread[start:start + reading["block_size"]]
        regular += [block[i] for i in rng.permutation(len(block))]

    n_sessions = reading["sessions"]
    sessions = [list(part) for part in np.array_split(np.array(regular, dtype=object), n_sessions)]
    session_of = {case.pk: s for s, part in enumerate(sessions) for case in part}
    appended = []
    for repeat in by_role["repeat"]:
        target = session_of[repeat.repeat_of_id] + 1
        if target < n_sessions:
            sessions[target].insert(int(rng.integers(0, len(sessions[target]) + 1)), repeat)
        else:
            appended.append(repeat)
    sessions[-1] += [appended[i] for i in rng.permutation(len(appended))]

    order = [(case, 1) for case in calibration]
    for s, part in enumerate(sessions, start=1):
        order += [(case, s) for case in part]
    return order


def _write_orders(study: Study, assignments: list[Assignment]) -> None:
    """Each assignment's cases in its own order (the study's cases and config are read once)."""
    cases = list(study.cases.select_related("item"))
    if not cases or not assignments:
        return
    config = validate_config(study.config)
    AssignedCase.objects.bulk_create([
        AssignedCase(assignment=assignment, case=case, position=position, session=session)
        for assignment in assignments
        for position, (case, session) in enumerate(reader_order(cases, config, assignment.order_seed), start=1)
    ], batch_size=5000)


@transaction.atomic
def assign_readers(study: Study, readers, actor=None) -> list[Assignment]:
    """Give each reader (not yet in the study) their own stored, reproducible case order."""
    created = []
    existing = set(study.assignments.values_list("reader_id", flat=True))
    for reader in readers:
        if reader.pk in existing:
            continue
        created.append(Assignment.objects.create(study=study, reader=reader, order_seed=order_seed(study, reader.pk)))
    _write_orders(study, created)
    if created:
        record("study.readers_added", actor, study, study.slug, readers=[a.reader.get_username() for a in created])
    return created


@transaction.atomic
def unassign_reader(study: Study, reader, actor=None) -> None:
    """Remove a reader who has not answered anything (answers are never deleted)."""
    from readerstudy.reading.models import Read

    assignment = study.assignments.filter(reader=reader).first()
    if assignment is None:
        return
    if Read.objects.filter(assigned_case__assignment=assignment).exists():
        raise StudyConfigError(f"{reader} has already answered cases in this study and cannot be removed")
    assignment.delete()
    record("study.reader_removed", actor, study, study.slug, reader=reader.get_username())
