"""Drawing a study's cases from the pool and each reader's case order, both from stored seeds.

Same pool + same seed gives the same cases; same study seed + reader gives the
same order.

Cases must be independent and must not give the truth away:

- at most `max_per_group` cases per source group (patient, source file, parent
  volume, generator and seed; see `imaging.sources`), and never two items with
  the same stored pixels;
- calibration cases (whose truth is shown) come from groups no regular case
  uses, and an item that is a regular case in one study is never a calibration
  case in another (and the other way round);
- a generator's training data are never drawn as real cases beside its samples
  (unless the coordinator allows it with a recorded reason, and then only where
  no other real item is left; which ones were used is recorded);
- synthetic near-copies of real images are left out unless the coordinator
  allows them with a recorded reason;
- no item is shown upsampled: a matrix above the smallest item of a stratum is refused.

Orders are a uniformly random permutation of the regular cases (no blocks): a
reader who has seen some truths learns nothing about the next case beyond the
study's ratio. With `truth_count: "binomial"` each case is synthetic with the
set probability, so even a reader who counts learns nothing at the end of the list.
"""

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from django.db import transaction

from readerstudy.audit.log import record
from readerstudy.imaging.canonical import upsampling
from readerstudy.imaging.models import Dimensionality, Origin, PoolItem
from readerstudy.imaging.orientation import common_orientation

from .config import StudyConfigError, is_forced_choice, stratum_key, validate_config
from .models import AssignedCase, Assignment, Study, StudyCase


@dataclass
class Draw:
    """Pool items chosen for a study, before they are written as StudyCase rows."""

    regular: list  # (PoolItem, stratum key)
    calibration: list
    repeats: list  # PoolItems of regular cases shown twice
    presets: dict  # stratum key -> [rows, cols, depth]
    excluded: dict = field(default_factory=dict)  # reason -> number of items left out
    training_used: list = field(default_factory=list)  # ids of training items drawn as real cases (allowed)
    trials: list = field(default_factory=list)  # forced choice: item ids per trial (real first), regular then calibration


def _split(total: int, fraction: float, rng, how: str) -> tuple[int, int]:
    synthetic = int(rng.binomial(total, fraction)) if how == "binomial" else int(round(total * fraction))
    return total - synthetic, synthetic


def _study_generators(config: dict):
    """The generators whose samples this study may show."""
    from generation.models import Generator

    qs = Generator.objects.all()
    if config["generators"]:
        qs = qs.filter(pk__in=config["generators"])
    return list(qs)


def _stratum_items(config: dict, modality: str, dimensionality: str, origin: str):
    qs = PoolItem.objects.filter(modality=modality, dimensionality=dimensionality, origin=origin)
    if origin == Origin.SYNTHETIC and config["generators"]:
        qs = qs.filter(generator_id__in=config["generators"])
    return qs


def _roles_elsewhere(study: Study) -> tuple[set, set]:
    """Source groups of (regular or repeated cases, calibration cases) in other studies.

    A calibration case shows its truth, so its group must not be a case to judge
    in any other study a reader may take part in, and the other way round.
    """
    rows = StudyCase.objects.exclude(study=study).values_list("item__source_group", "role")
    regular = {g for g, role in rows if role != StudyCase.Role.CALIBRATION}
    calibration = {g for g, role in rows if role == StudyCase.Role.CALIBRATION}
    return regular, calibration


class _GroupLedger:
    """Counts cases per source group and per content hash while drawing."""

    def __init__(self, max_per_group: int):
        self.max = max_per_group
        self.groups: Counter = Counter()
        self.contents: set = set()

    def admits(self, item: PoolItem, fresh_group: bool = False) -> bool:
        if item.content_sha256 and item.content_sha256 in self.contents:
            return False
        if fresh_group:
            return self.groups[item.source_group] == 0
        return self.groups[item.source_group] < self.max

    def take(self, item: PoolItem) -> None:
        self.groups[item.source_group] += 1
        if item.content_sha256:
            self.contents.add(item.content_sha256)


def _take(rng, items: list, n: int, ledger: _GroupLedger, fresh_group: bool = False) -> list:
    """Up to n items in a seeded random order, skipping those the ledger refuses."""
    chosen = []
    for i in rng.permutation(len(items)):
        if len(chosen) == n:
            break
        if ledger.admits(items[i], fresh_group):
            ledger.take(items[i])
            chosen.append(items[i])
    return sorted(chosen, key=lambda item: item.pk)


def pool_summary(generators: list[int] | None = None) -> dict:
    """Per stratum key: real items and source groups, and synthetic items per generator (for the study form)."""
    from django.db.models import Count

    from .config import STRATA

    summary = {stratum_key(m, d): {"real": 0, "real_groups": 0, "synthetic": []} for m, d in STRATA}
    real = (PoolItem.objects.filter(origin=Origin.REAL).values("modality", "dimensionality")
            .annotate(n=Count("id"), groups=Count("source_group", distinct=True)))
    for row in real:
        key = stratum_key(row["modality"], row["dimensionality"])
        if key in summary:
            summary[key].update(real=row["n"], real_groups=row["groups"])
    synthetic = PoolItem.objects.filter(origin=Origin.SYNTHETIC)
    if generators:
        synthetic = synthetic.filter(generator_id__in=generators)
    for row in (synthetic.values("modality", "dimensionality", "generator__name", "generator__version")
                .annotate(n=Count("id")).order_by("generator__name", "generator__version")):
        key = stratum_key(row["modality"], row["dimensionality"])
        if key in summary:
            summary[key]["synthetic"].append(
                {"generator": f"{row['generator__name']} v{row['generator__version']}", "n": row["n"]})
    return summary


def check_matrix(config: dict, items_by_stratum: dict | None = None) -> None:
    """Refuse a configured matrix that would upsample any item a stratum may show, naming the items."""
    size, depth = config["matrix"]["size"], config["matrix"]["depth"]
    if size is None and depth is None:
        return
    problems = []
    for s in config["strata"]:
        key = stratum_key(s["modality"], s["dimensionality"])
        volume = s["dimensionality"] == Dimensionality.VOLUME
        if items_by_stratum is not None:
            items = items_by_stratum.get(key, [])
        else:
            items = [item for origin in (Origin.REAL, Origin.SYNTHETIC)
                     for item in _stratum_items(config, s["modality"], s["dimensionality"], origin)
                     .only("id", "master_shape", "origin")]
        bad = []
        for item in items:
            d, h, w = item.master_shape
            rows = cols = size or min(h, w)
            want = (depth or d) if volume else 1
            if upsampling((d, h, w), rows, cols, want):
                bad.append(item)
        if bad:
            smallest = min(min(i.master_shape[1:]) for i in bad)
            named = ", ".join(f"#{i.pk} ({'x'.join(map(str, i.master_shape[1:]))}"
                              f"{' x ' + str(i.master_shape[0]) + ' slices' if volume else ''})" for i in bad[:5])
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            limit = f"at most {smallest} pixels" + (
                f" and {min(i.master_shape[0] for i in bad)} slices" if volume and depth else "")
            problems.append(f"{key}: the matrix would upsample item{'s' if len(bad) > 1 else ''} {named}{more}; "
                            f"choose {limit}, or leave it empty to use the smallest item")
    if problems:
        raise StudyConfigError("; ".join(problems))


def draw_cases(study: Study) -> Draw:
    """Choose regular, calibration and repeated cases; raises StudyConfigError listing every shortfall."""
    config = validate_config(study.config)
    reading, rules = config["reading"], config["sampling"]
    if not config["strata"]:
        raise StudyConfigError("the study has no cases: give at least one stratum a number of cases")
    rng = np.random.default_rng(study.seed)
    regular_elsewhere, calibration_elsewhere = _roles_elsewhere(study)
    trained_on = {g for generator in _study_generators(config) for g in generator.config.get("training_groups", [])}
    excluded = Counter()

    trained_items = {}

    def eligible(modality, dimensionality, origin, for_calibration=False):
        items, reasons = [], Counter()
        for item in _stratum_items(config, modality, dimensionality, origin).select_related("generator"):
            if origin == Origin.REAL and item.source_group in trained_on:
                reasons["real items a study generator was trained on"] += 1
                if not for_calibration:
                    trained_items.setdefault((modality, dimensionality), []).append(item)
            elif (origin == Origin.SYNTHETIC and item.quality.get("near_copy") and not rules["allow_near_copies"]
                  and not item.generator.is_control):
                reasons["synthetic near-copies of real images"] += 1
            elif item.source_group in (regular_elsewhere if for_calibration else calibration_elsewhere):
                reasons["cases of other studies in the opposite role" if for_calibration else
                        "calibration cases of other studies"] += 1
            else:
                items.append(item)
        if not for_calibration:
            excluded.update(reasons)
        return sorted(items, key=lambda item: item.pk)

    problems, regular, ledger = [], [], _GroupLedger(rules["max_per_group"])
    training_used = []
    wanted = []
    forced, alternatives = is_forced_choice(config), config["design"]["alternatives"]
    for s in config["strata"]:
        if forced:  # a trial: one real and alternatives-1 synthetic images of the stratum
            real_n, synthetic_n = s["cases"], s["cases"] * (alternatives - 1)
        else:
            real_n, synthetic_n = _split(s["cases"], config["synthetic_fraction"], rng, rules["truth_count"])
        for origin, n in ((Origin.REAL, real_n), (Origin.SYNTHETIC, synthetic_n)):
            wanted.append((s, origin, n, eligible(s["modality"], s["dimensionality"], origin)))
    # Scarcest groups first, so a volume's group is not used up by its own slices in another stratum.
    for s, origin, n, pool in sorted(wanted, key=lambda w: (len({i.source_group for i in w[3]}) - w[2])):
        key = stratum_key(s["modality"], s["dimensionality"])
        chosen = _take(rng, pool, n, ledger)
        if len(chosen) < n and origin == Origin.REAL and rules["allow_training_data"]:
            extra = _take(rng, trained_items.get((s["modality"], s["dimensionality"]), []), n - len(chosen), ledger)
            training_used += [item.pk for item in extra]
            chosen = sorted(chosen + extra, key=lambda item: item.pk)
        if len(chosen) < n:
            groups = len({i.source_group for i in pool})
            distinct = len({i.content_sha256 for i in pool})
            have = f"the pool has {len(pool)} in {groups} group{'s' if groups != 1 else ''}"
            if distinct < len(pool):
                have += f", {distinct} distinct images"
            if min(groups, distinct) >= n:
                have = f"{len(chosen)} left after the study's other strata ({have})"
            problems.append(f"{key}: needs {n} {origin} item{'s' if n != 1 else ''} from distinct source groups, "
                            f"{have}")
        regular += [(item, key) for item in chosen]

    calibration, trials = [], []
    if forced:
        trials = _form_trials(rng, regular, config)
        calibration, calibration_trials = _calibration_trials(rng, config, eligible, ledger, problems)
        trials += calibration_trials
    half = 0 if forced else reading["calibration_cases"] // 2
    for origin in (Origin.REAL, Origin.SYNTHETIC) if half else ():
        candidates = [(item, stratum_key(s["modality"], s["dimensionality"])) for s in config["strata"]
                      for item in eligible(s["modality"], s["dimensionality"], origin, for_calibration=True)]
        keys = {i.pk: k for i, k in candidates}
        chosen = _take(rng, [i for i, _ in candidates], half, ledger, fresh_group=True)
        if len(chosen) < half:
            problems.append(
                f"calibration: needs {half} {origin} items from source groups no case of this study uses "
                f"(and not cases of other studies), {len(chosen)} found"
            )
        calibration += [(item, keys[item.pk]) for item in chosen]

    repeats = []
    half = reading["repeat_cases"] // 2
    for origin in (Origin.REAL, Origin.SYNTHETIC):
        candidates = [item for item, _ in regular if item.origin == origin]
        if len(candidates) < half:
            problems.append(f"repeats: needs {half} {origin} regular cases to repeat, the study has {len(candidates)}")
        else:
            repeats += [candidates[i] for i in sorted(rng.choice(len(candidates), size=half, replace=False))]
    if problems:
        raise StudyConfigError("; ".join(problems))
    chosen = regular + calibration
    check_matrix(config, {key: [i for i, k in chosen if k == key] for key in {k for _, k in chosen}})
    return Draw(regular, calibration, repeats, _presets(config, chosen), dict(excluded), training_used, trials)


def _form_trials(rng, regular: list, config: dict) -> list[list[int]]:
    """Regular items grouped into trials within each stratum: one real and alternatives-1 synthetic each."""
    trials = []
    others = config["design"]["alternatives"] - 1
    for s in config["strata"]:
        key = stratum_key(s["modality"], s["dimensionality"])
        reals = [i.pk for i, k in regular if k == key and i.origin == Origin.REAL]
        synthetic = [i.pk for i, k in regular if k == key and i.origin == Origin.SYNTHETIC]
        reals = [reals[j] for j in rng.permutation(len(reals))]
        synthetic = [synthetic[j] for j in rng.permutation(len(synthetic))]
        trials += [[real, *synthetic[t * others:(t + 1) * others]] for t, real in enumerate(reals)]
    return trials


def _calibration_trials(rng, config: dict, eligible, ledger, problems: list):
    """Calibration trials, strata taken in turn, from source groups no other case of the study uses."""
    alternatives = config["design"]["alternatives"]
    wanted = config["reading"]["calibration_cases"]
    pools, chosen, trials = {}, [], []
    for t in range(wanted):
        s = config["strata"][t % len(config["strata"])]
        key = stratum_key(s["modality"], s["dimensionality"])
        for origin in (Origin.REAL, Origin.SYNTHETIC):
            if (key, origin) not in pools:
                pools[key, origin] = eligible(s["modality"], s["dimensionality"], origin, for_calibration=True)
        real = _take(rng, pools[key, Origin.REAL], 1, ledger, fresh_group=True)
        synthetic = _take(rng, pools[key, Origin.SYNTHETIC], alternatives - 1, ledger, fresh_group=True)
        if len(real) < 1 or len(synthetic) < alternatives - 1:
            problems.append(f"calibration: needs {wanted} trials of 1 real and {alternatives - 1} synthetic items "
                            f"from source groups no case of this study uses (and not cases of other studies); "
                            f"{key} ran out at trial {t + 1}")
            break
        chosen += [(item, key) for item in real + synthetic]
        trials.append([item.pk for item in real + synthetic])
    return chosen, trials


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
    from .preview import discard_previews

    study = Study.objects.select_for_update().get(pk=study.pk)
    if study.status != Study.Status.DRAFT:
        raise StudyConfigError("cases can only be drawn while the study is a draft")
    discard_previews(study)  # a preview shows the cases drawn before; it ends with them
    AssignedCase.objects.filter(assignment__study=study).delete()
    study.cases.all().delete()
    trial_of = {pk: number for number, trial in enumerate(draw.trials, start=1) for pk in trial}
    regular = StudyCase.objects.bulk_create(
        [StudyCase(study=study, item=item, role=StudyCase.Role.REGULAR, trial=trial_of.get(item.pk))
         for item, _ in draw.regular]
    )
    by_item = {case.item_id: case for case in regular}
    StudyCase.objects.bulk_create(
        [StudyCase(study=study, item=item, role=StudyCase.Role.CALIBRATION, trial=trial_of.get(item.pk))
         for item, _ in draw.calibration]
        + [StudyCase(study=study, item=item, role=StudyCase.Role.REPEAT, repeat_of=by_item[item.pk])
           for item in draw.repeats]
    )
    realised = Counter((k, item.origin) for item, k in draw.regular)
    study.config = {**validate_config(study.config), "presets": draw.presets, "drawn": {
        "excluded": draw.excluded,
        "training_items_used": draw.training_used,
        "regular": {key: {o: realised[(key, o)] for o in (Origin.REAL, Origin.SYNTHETIC)} for key in draw.presets},
        # Per stratum, never per case: markers only where every case has the same known orientation.
        "orientation": {key: common_orientation([i for i, k in draw.regular + draw.calibration if k == key])
                        for key in draw.presets},
    }}
    study.save(update_fields=["config"])
    _write_orders(study, list(study.assignments.all()))


def order_seed(study: Study, reader_id: int) -> int:
    """A reader's order seed, derived from the study seed (so orders are reproducible)."""
    return int(np.random.SeedSequence([study.seed % 2**63, reader_id]).generate_state(1, np.uint64)[0] >> 1)


def reader_order(cases: list[StudyCase], config: dict, seed: int) -> list[tuple[StudyCase, int]]:
    """(case, session) in reading order for one reader.

    Calibration cases come first, in random order. Regular cases follow in a
    uniformly random order over the whole list, without blocks: in a balanced
    block, the truths already seen would tell the truth of the block's last
    case. They are split into `sessions` consecutive sessions; a repeat goes
    into the session after its original (or the end of the last one).
    """
    reading = config["reading"]
    rng = np.random.default_rng(seed)
    by_role = {role.value: sorted((c for c in cases if c.role == role), key=lambda c: c.pk) for role in StudyCase.Role}

    calibration = [by_role["calibration"][i] for i in rng.permutation(len(by_role["calibration"]))]
    regular = [by_role["regular"][i] for i in rng.permutation(len(by_role["regular"]))]

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


def reader_trials(cases: list[StudyCase], config: dict, seed: int) -> list[tuple[list[StudyCase], int]]:
    """Forced choice: (the trial's cases in panel order, session) in reading order for one reader.

    Calibration trials first, then the regular trials in a uniformly random order,
    split into sessions. The real image's panel is balanced over the reader's trials
    (each panel equally often, give or take one, separately for calibration and
    regular trials) and placed at random; the synthetic images fill the other panels
    in random order. Every reader gets their own placement.
    """
    rng = np.random.default_rng(seed)
    alternatives = config["design"]["alternatives"]
    by_trial = {}
    for case in sorted(cases, key=lambda c: c.pk):
        by_trial.setdefault((case.role, case.trial), []).append(case)

    def arranged(role):
        trials = [members for (r, _), members in sorted(by_trial.items(), key=lambda kv: kv[0][1]) if r == role]
        trials = [trials[i] for i in rng.permutation(len(trials))]
        real_panels = rng.permutation(np.resize(np.arange(alternatives), len(trials)))
        out = []
        for members, real_panel in zip(trials, real_panels):
            real = [c for c in members if c.item.origin == Origin.REAL]
            synthetic = [c for c in members if c.item.origin != Origin.REAL]
            synthetic = [synthetic[i] for i in rng.permutation(len(synthetic))]
            out.append(synthetic[:real_panel] + real + synthetic[real_panel:])
        return out

    order = [(trial, 1) for trial in arranged(StudyCase.Role.CALIBRATION)]
    regular = arranged(StudyCase.Role.REGULAR)
    bounds = np.array_split(np.arange(len(regular)), config["reading"]["sessions"])
    for s, part in enumerate(bounds, start=1):
        order += [(regular[i], s) for i in part]
    return order


def _write_orders(study: Study, assignments: list[Assignment]) -> None:
    """Each assignment's cases in its own order (the study's cases and config are read once)."""
    cases = list(study.cases.select_related("item"))
    if not cases or not assignments:
        return
    config = validate_config(study.config)
    if is_forced_choice(config):
        rows = [AssignedCase(assignment=assignment, case=case, position=position, panel=panel, session=session)
                for assignment in assignments
                for position, (trial, session) in enumerate(reader_trials(cases, config, assignment.order_seed), 1)
                for panel, case in enumerate(trial)]
    else:
        rows = [AssignedCase(assignment=assignment, case=case, position=position, session=session)
                for assignment in assignments
                for position, (case, session) in enumerate(reader_order(cases, config, assignment.order_seed), 1)]
    AssignedCase.objects.bulk_create(rows, batch_size=5000)


def role_conflicts(study: Study, reader) -> list[str]:
    """Other studies of `reader` where a source group of this study's cases has the opposite role.

    A calibration case shows its truth: the reader must not judge the same
    source as a regular case in another study, nor see the truth of a case they
    judge (or may go back to) elsewhere.
    """
    here = study.cases.values_list("item__source_group", "role")
    regular = {g for g, role in here if role != StudyCase.Role.CALIBRATION}
    calibration = {g for g, role in here if role == StudyCase.Role.CALIBRATION}
    found = Counter()
    elsewhere = (StudyCase.objects.filter(study__assignments__reader=reader).exclude(study=study)
                 .values_list("item__source_group", "role", "study__name"))
    for group, role, name in elsewhere:
        if (role == StudyCase.Role.CALIBRATION and group in regular) or (
                role != StudyCase.Role.CALIBRATION and group in calibration):
            found[name] += 1
    return [f"{n} case(s) in the opposite role (calibration vs regular) in “{name}”" for name, n in found.items()]


@transaction.atomic
def assign_readers(study: Study, readers, actor=None) -> list[Assignment]:
    """Give each reader (not yet in the study) their own stored, reproducible case order.

    Refuses (StudyConfigError, nothing assigned) a reader for whom a case of
    this study is a calibration case in another of their studies, or the other way round.
    """
    from .preview import discard_previews

    created = []
    existing = set(study.assignments.readers().values_list("reader_id", flat=True))
    problems = [f"{reader}: {'; '.join(found)}" for reader in readers
                if reader.pk not in existing and (found := role_conflicts(study, reader))]
    if problems:
        raise StudyConfigError("cannot assign " + "; ".join(problems) + " — draw this study's cases again "
                               "(drawing avoids such sources) or choose other readers")
    for reader in readers:
        if reader.pk in existing:
            continue
        discard_previews(study, reader)  # a coordinator who becomes a reader reads for real
        created.append(Assignment.objects.create(study=study, reader=reader, order_seed=order_seed(study, reader.pk)))
    _write_orders(study, created)
    if created:
        record("study.readers_added", actor, study, study.slug, readers=[a.reader.get_username() for a in created])
    return created


@transaction.atomic
def unassign_reader(study: Study, reader, actor=None) -> None:
    """Remove a reader who has not answered anything (answers are never deleted)."""
    from readerstudy.reading.models import Read

    assignment = study.assignments.readers().filter(reader=reader).first()
    if assignment is None:
        return
    if Read.objects.filter(assigned_case__assignment=assignment).exists():
        raise StudyConfigError(f"{reader} has already answered cases in this study and cannot be removed")
    assignment.delete()
    record("study.reader_removed", actor, study, study.slug, reader=reader.get_username())
