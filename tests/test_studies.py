"""Coordinators configure, prepare, audit, assign and open studies."""

from collections import Counter

import numpy as np

import pydicom
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from readerstudy.imaging.models import Origin
from readerstudy.imaging.pool import rendition_files
from readerstudy.jobs.models import Job
from readerstudy.studies.config import StudyConfigError, validate_config
from readerstudy.studies.lifecycle import close_study, create_study, open_study, prepare_study
from readerstudy.studies.models import AssignedCase, Study, StudyCase
from readerstudy.studies.leak_audit import run_leak_audit
from readerstudy.studies.progress import study_progress
from readerstudy.studies.sampling import assign_readers, draw_cases, reader_order, unassign_reader

from .studies import coordinator, make_pool, readers

pytestmark = pytest.mark.django_db

MIXED = {("CT", "2d"): 12, ("MR", "3d"): 4}


@pytest.fixture
def pool():
    return make_pool(
        real={("CT", "2d"): 14, ("MR", "3d"): 4, ("XR", "2d"): 3},
        synthetic={("CT", "2d"): 14, ("MR", "3d"): 4, ("XR", "2d"): 3},
    )


def strata(mix):
    return [{"modality": m, "dimensionality": d, "cases": n} for (m, d), n in mix.items()]


@pytest.mark.parametrize("change, message", [
    ({"strata": [{"modality": "XR", "dimensionality": "3d", "cases": 2}]}, "no such stratum: XR 3d"),
    ({"synthetic_fraction": 1.5}, "synthetic_fraction must be a number from 0 to 1"),
    ({"reading": {"calibration_cases": 3}}, "calibration cases must be an even number"),
    ({"reading": {"sessions": 0}}, "sessions must be between 1 and 20"),
    ({"reading": {"allow_back": "yes"}}, "allow_back must be true or false"),
    ({"questions": {"template": "vas"}}, "unknown rating template 'vas'"),
    ({"questions": {"template": "likert", "scales": {"realism": ["a", "b"]}}},
     "Realistic appearance: this scale needs exactly 5 anchor texts, got 2"),
    ({"colour": "blue"}, "unknown configuration keys: colour"),
    ({"sampling": {"max_per_group": 0}}, "cases per source group must be between 1 and 1000"),
    ({"sampling": {"truth_count": "balanced"}}, "truth_count must be 'exact'"),
    ({"sampling": {"allow_training_data": True}}, "give a reason for showing a generator's training data"),
    ({"sampling": {"shuffle": True}}, "unknown sampling options: shuffle"),
])
def test_bad_configurations_say_what_is_wrong(change, message):
    with pytest.raises(StudyConfigError, match=message):
        validate_config(change)


def test_configurations_saved_before_orders_were_random_still_load():
    # Block-balanced orders were removed (they let a reader predict a block's last truth).
    config = validate_config({"reading": {"block_size": 6, "sessions": 2}})
    assert "block_size" not in config["reading"] and config["reading"]["sessions"] == 2
    assert config["sampling"] == {"max_per_group": 1, "truth_count": "exact", "allow_near_copies": False,
                                  "near_copy_reason": "", "allow_training_data": False, "training_data_reason": ""}


def test_templates_ship_khader_and_likert_and_anchors_are_editable():
    khader = validate_config({})["questions"]["scales"]
    assert [o["code"] for o in khader["realism"]] == ["A", "B", "C", "D"]
    assert khader["realism"][0]["text"].startswith("Not recognisable")
    assert khader["realism"][3]["text"] == "Cannot tell whether it is fake or not"
    assert khader["slice_consistency"][2]["text"].startswith("More than 10")
    likert = validate_config({"questions": {"template": "likert", "scales": {
        "realism": ["awful", "bad", "fine", "good", "perfect"]}}})["questions"]["scales"]
    assert [o["value"] for o in likert["realism"]] == [1, 2, 3, 4, 5]
    assert likert["realism"][4]["text"] == "perfect"
    assert likert["anatomy"][0]["text"] == "Very poor"


def test_cases_are_drawn_by_stratum_and_ratio_reproducibly(pool):
    study = create_study(name="S", config={"strata": strata(MIXED), "synthetic_fraction": 0.5}, seed=11)
    draw = draw_cases(study)
    got = Counter((i.modality, i.dimensionality, i.origin) for i, _ in draw.regular)
    assert got == {("CT", "2d", "real"): 6, ("CT", "2d", "synthetic"): 6, ("MR", "3d", "real"): 2,
                   ("MR", "3d", "synthetic"): 2}
    again = draw_cases(create_study(name="S2", config=study.config, seed=11))
    assert [i.pk for i, _ in again.regular] == [i.pk for i, _ in draw.regular]
    other = draw_cases(create_study(name="S3", config=study.config, seed=12))
    assert [i.pk for i, _ in other.regular] != [i.pk for i, _ in draw.regular]
    # The matrix is the smallest item of each stratum (here every phantom is 48 px, volumes 12 slices).
    assert draw.presets == {"CT/2d": [48, 48, 1], "MR/3d": [48, 48, 12]}


def test_generators_restrict_synthetic_cases(pool):
    config = {"strata": strata({("CT", "2d"): 4}), "generators": [pool.pk + 1000]}
    with pytest.raises(StudyConfigError, match="CT/2d: needs 2 synthetic items from distinct source groups, the pool has 0 in 0 groups"):
        draw_cases(create_study(name="S", config=config))


def test_a_shortfall_names_every_stratum_that_lacks_items(pool):
    config = {"strata": strata({("XR", "2d"): 10, ("MR", "3d"): 10}), "reading": {"calibration_cases": 40}}
    with pytest.raises(StudyConfigError) as info:
        draw_cases(create_study(name="S", config=config))
    text = str(info.value)
    assert "XR/2d: needs 5 real items from distinct source groups, the pool has 3 in 3 groups" in text
    assert "MR/3d: needs 5 synthetic items from distinct source groups, the pool has 4 in 4 groups" in text
    assert "calibration: needs 20 real items" in text
    assert not StudyCase.objects.exists()


def window_variance(orders, width):
    """Variance of the number of synthetic cases in aligned windows of `width` consecutive cases."""
    counts = [sum(c.item.origin == Origin.SYNTHETIC for c in order[start:start + width])
              for order in orders for start in range(0, len(order) - width + 1, width)]
    return float(np.var(counts))


def test_reader_orders_give_no_information_beyond_the_ratio_and_are_reproducible(pool):
    config = {"strata": strata({("CT", "2d"): 24})}
    study = create_study(name="S", config=config, seed=3)
    prepare_study(study)
    cases = list(study.cases.select_related("item"))
    cfg = validate_config(study.config)
    order_a = [c.pk for c, _ in reader_order(cases, cfg, 1)]
    assert order_a == [c.pk for c, _ in reader_order(cases, cfg, 1)]
    assert order_a != [c.pk for c, _ in reader_order(cases, cfg, 2)]
    orders = [[c for c, _ in reader_order(cases, cfg, seed)] for seed in range(400)]
    n, k = 24, 12
    for width in (2, 4, 6, 10):
        # A uniformly random order: window counts are hypergeometric. Balanced blocks would make them constant,
        # so a reader who saw one truth of a pair would know the other.
        expected = width * (k / n) * (1 - k / n) * (n - width) / (n - 1)
        assert 0.8 * expected < window_variance(orders, width) < 1.2 * expected, width
    # After a synthetic case the next is synthetic about as often as the ratio says (minus the one seen).
    pairs = Counter((a.item.origin, b.item.origin) for order in orders for a, b in zip(order, order[1:]))
    after_synthetic = pairs[(Origin.SYNTHETIC, Origin.SYNTHETIC)] / (
        pairs[(Origin.SYNTHETIC, Origin.SYNTHETIC)] + pairs[(Origin.SYNTHETIC, Origin.REAL)])
    assert abs(after_synthetic - 11 / 23) < 0.03


def test_binomial_truth_count_varies_the_number_of_synthetic_cases(pool):
    counts = set()
    for seed in range(12):
        draw = draw_cases(create_study(name=f"B{seed}", seed=seed, config={
            "strata": strata({("CT", "2d"): 10}), "sampling": {"truth_count": "binomial"}}))
        counts.add(sum(item.origin == Origin.SYNTHETIC for item, _ in draw.regular))
    assert len(counts) >= 3  # exactly 5 every time under "exact"


def test_calibration_first_repeats_after_their_originals_and_sessions(pool):
    config = {"strata": strata({("CT", "2d"): 12}),
              "reading": {"calibration_cases": 2, "repeat_cases": 4, "sessions": 2, "washout_hours": 24}}
    study = create_study(name="S", config=config, seed=5)
    prepare_study(study)
    (reader,) = readers(1)
    assign_readers(study, [reader])
    rows = list(AssignedCase.objects.filter(assignment__reader=reader).select_related("case").order_by("position"))
    assert [r.position for r in rows] == list(range(1, 19))
    assert {r.case.role for r in rows[:2]} == {"calibration"}
    assert Counter(r.case.item.origin for r in rows[:2]) == {"real": 1, "synthetic": 1}
    position = {r.case_id: r for r in rows}
    for r in rows:
        if r.case.role == "repeat":
            original = position[r.case.repeat_of_id]
            assert r.position > original.position and r.session >= original.session
            assert r.session == min(original.session + 1, 2)
    assert Counter(r.session for r in rows if r.case.role == "regular") == {1: 6, 2: 6}
    assert Counter(r.case.item.origin for r in rows if r.case.role == "repeat") == {"real": 2, "synthetic": 2}


def test_leak_audit_passes_for_canonical_files_and_refuses_to_open_when_a_file_differs(pool):
    study = create_study(name="S", config={"strata": strata(MIXED)})
    result = prepare_study(study)
    assert result["audit_ok"], result["audit_problems"]
    study.refresh_from_db()
    assert study.audit["files"] == 12 + 4 * 12
    assert study.audit["strata"]["MR/3d"]["differs"] == []
    assign_readers(study, readers(1))

    synthetic = study.cases.filter(item__origin="synthetic", item__modality="CT").first().item
    path = rendition_files(synthetic.renditions.get(rows=48))[0]
    ds = pydicom.dcmread(path)
    ds.InstitutionName = "GENERATOR LAB"  # a tag real files do not have, and a few more bytes
    ds.save_as(path)
    # Opening needs an audit of the files as they are now; the tampered file makes the stored one stale.
    with pytest.raises(StudyConfigError, match="changed since the last leak audit"):
        open_study(study)
    audit = run_leak_audit(study)
    text = "; ".join(audit["problems"])
    assert "CT/2d: tag set differs" in text and "CT/2d: file size differs" in text
    with pytest.raises(StudyConfigError, match="the leak audit found differences: .*tag set differs"):
        open_study(study)
    study.refresh_from_db()
    assert study.status == Study.Status.DRAFT and not study.audit["ok"]


def test_an_open_study_cannot_be_redrawn_and_readers_with_answers_stay(pool):
    from readerstudy.reading.answers import save_answer

    (reader,) = readers(1)
    study = create_study(name="S", config={"strata": strata({("CT", "2d"): 4}), "questions": {"confidence": False,
                                                                                             "template": "none"}})
    prepare_study(study)
    assign_readers(study, [reader])
    open_study(study)
    with pytest.raises(StudyConfigError, match="cases can only be drawn while the study is a draft"):
        prepare_study(study)
    first = AssignedCase.objects.get(assignment__reader=reader, position=1)
    save_answer(first, {"label": "real", "idempotency_key": "k" * 10})
    with pytest.raises(StudyConfigError, match="has already answered cases"):
        unassign_reader(study, reader)
    close_study(study)
    assert Study.objects.get(pk=study.pk).status == Study.Status.CLOSED


def test_progress_uses_a_fixed_number_of_queries_for_fifty_readers(pool):
    from readerstudy.reading.answers import save_answer

    team = readers(50)
    study = create_study(name="S", config={"strata": strata({("CT", "2d"): 8}),
                                           "questions": {"confidence": False, "template": "none"}})
    prepare_study(study)
    assign_readers(study, team)
    open_study(study)
    for n, reader in enumerate(team[:10]):
        for position in range(1, n % 4 + 2):
            case = AssignedCase.objects.get(assignment__reader=reader, position=position)
            save_answer(case, {"label": "fake", "submit": True, "duration_ms": 1000 * position,
                               "idempotency_key": f"key-{n:03d}-{position}"})
    with CaptureQueriesContext(connection) as queries:
        rows = study_progress(study)
    assert len(queries) <= 3
    assert len(rows) == 50
    by_name = {r.reader: r for r in rows}
    assert (by_name["reader1"].done, by_name["reader1"].remaining) == (1, 7)
    assert (by_name["reader4"].done, by_name["reader4"].median_seconds) == (4, 2.5)
    assert by_name["reader50"].done == 0 and by_name["reader50"].median_seconds is None


def test_coordinator_sets_up_a_study_through_the_web_pages(client, pool, django_capture_on_commit_callbacks):
    team = readers(2)
    client.force_login(coordinator())
    form = {
        "name": "Chest CT realism", "instructions": "Look carefully.", "synthetic_percent": 50,
        "cases_ct_2d": 8, "cases_mr_3d": 2, "confidence": "on", "template": "likert",
        "criteria": ["realism", "anatomy", "slice_consistency"], "anchors_realism": "1\n2\n3\n4\n5",
        "allow_back": "on", "calibration_cases": 2, "repeat_cases": 2, "sessions": 1, "washout_hours": 0,
        "blank_ms": 250, "max_per_group": 1, "truth_count": "exact", "seed": 99,
    }
    response = client.post(reverse("study-create"), form)
    study = Study.objects.get(name="Chest CT realism")
    assert response.status_code == 302 and study.seed == 99
    assert study.config["questions"]["scales"]["realism"][4]["text"] == "5"
    assert study.config["questions"]["scales"]["anatomy"][0]["text"] == "Very poor"

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("study-action", args=[study.slug, "prepare"]))
    job = Job.objects.get(kind=Job.Kind.PREPARE_STUDY)
    assert response.url == reverse("job-detail", args=[job.pk])
    assert job.status == Job.Status.SUCCEEDED and job.result["audit_ok"]
    assert study.cases.count() == 8 + 2 + 2 + 2

    response = client.post(reverse("study-action", args=[study.slug, "open"]), follow=True)
    assert "assign at least one reader first" in response.content.decode()
    client.post(reverse("study-action", args=[study.slug, "readers"]), {"readers": [u.pk for u in team]})
    assert study.assignments.count() == 2
    assert AssignedCase.objects.filter(assignment__study=study).count() == 2 * 14
    client.post(reverse("study-action", args=[study.slug, "open"]))
    study.refresh_from_db()
    assert study.status == Study.Status.OPEN

    page = client.get(reverse("study-detail", args=[study.slug])).content.decode()
    assert "Passed" in page and "Close the study" in page
    response = client.get(reverse("study-edit", args=[study.slug]), follow=True)
    assert "Only a draft study can be edited" in response.content.decode()
    progress = client.get(reverse("study-progress", args=[study.slug])).content.decode()
    assert "reader1" in progress and "reader2" in progress


def test_form_errors_are_shown_and_nothing_is_created(client, pool):
    client.force_login(coordinator())
    response = client.post(reverse("study-create"), {
        "name": "Bad", "synthetic_percent": 50, "template": "khader", "calibration_cases": 3, "repeat_cases": 0,
        "sessions": 1, "washout_hours": 0, "blank_ms": 0, "max_per_group": 1, "truth_count": "exact",
        "cases_ct_2d": 4,
    })
    assert response.status_code == 200
    assert "calibration cases must be an even number" in response.content.decode()
    response = client.post(reverse("study-create"), {
        "name": "Empty", "synthetic_percent": 50, "template": "khader", "calibration_cases": 0, "repeat_cases": 0,
        "sessions": 1, "washout_hours": 0, "blank_ms": 0, "max_per_group": 1, "truth_count": "exact",
    })
    assert "give at least one stratum a number of cases" in response.content.decode()
    assert not Study.objects.exists()


def test_the_study_form_shows_the_pool_and_warns_when_it_cannot_supply_the_study(client, pool):
    client.force_login(coordinator())
    page = client.get(reverse("study-create")).content.decode()
    assert "In the pool now" in page and "14 (14)" in page and "test generator v1: 14" in page
    response = client.post(reverse("study-create"), {
        "name": "Too big", "synthetic_percent": 50, "template": "none", "calibration_cases": 0, "repeat_cases": 0,
        "sessions": 1, "washout_hours": 0, "blank_ms": 0, "max_per_group": 1, "truth_count": "exact",
        "cases_xr_2d": 10, "cases_mr_3d": 10,
    }, follow=True)
    text = response.content.decode()
    assert Study.objects.filter(name="Too big").exists()  # a draft may wait for more images
    assert "the pool cannot supply it yet" in text
    assert "XR/2d: needs 5 real items" in text and "MR/3d: needs 5 real items" in text  # every shortfall at once


def test_a_failed_preparation_shows_its_reason_and_close_needs_confirmation(client, pool, django_capture_on_commit_callbacks):
    client.force_login(coordinator())
    study = create_study(name="S", config={"strata": strata({("XR", "2d"): 10})})
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("study-action", args=[study.slug, "prepare"]))
    page = client.get(reverse("study-detail", args=[study.slug])).content.decode()
    assert "Prepare study failed" in page and "XR/2d: needs 5 real items" in page

    opened = create_study(name="O", config={"strata": strata({("CT", "2d"): 4})})
    prepare_study(opened)
    assign_readers(opened, readers(1))
    open_study(opened)
    response = client.post(reverse("study-action", args=[opened.slug, "close"]), follow=True)
    assert "to close the study" in response.content.decode()
    assert Study.objects.get(pk=opened.pk).status == Study.Status.OPEN
    client.post(reverse("study-action", args=[opened.slug, "close"]), {"confirm": "yes"})
    assert Study.objects.get(pk=opened.pk).status == Study.Status.CLOSED
    assert 'http-equiv="refresh"' in client.get(reverse("study-progress", args=[opened.slug])).content.decode()


def test_a_study_is_cloned_as_a_new_draft(client, pool):
    from readerstudy.audit.models import AuditEvent

    client.force_login(coordinator())
    original = create_study(name="Original", config={"strata": strata({("CT", "2d"): 4}),
                                                     "reading": {"calibration_cases": 2}}, instructions="Look.")
    prepare_study(original)
    response = client.post(reverse("study-action", args=[original.slug, "clone"]))
    copy = Study.objects.get(name="Copy of Original")
    assert response.url == reverse("study-edit", args=[copy.slug])
    assert copy.status == Study.Status.DRAFT and copy.instructions == "Look." and copy.seed != original.seed
    assert copy.config["reading"]["calibration_cases"] == 2 and copy.config["presets"] == {}
    assert not copy.cases.exists()
    assert AuditEvent.objects.filter(action="study.cloned").exists()


def test_the_audit_blocks_duplicate_pixels_and_shared_groups_and_warns_of_near_copies(pool):
    from readerstudy.imaging.models import Dataset, PoolItem
    from readerstudy.imaging.pool import create_pool_item, ensure_rendition
    from readerstudy.imaging.storage import load_master

    study = create_study(name="S", config={"strata": strata({("CT", "2d"): 4}), "reading": {"calibration_cases": 2}})
    prepare_study(study)
    study.refresh_from_db()
    assert study.audit["ok"]
    regular = study.cases.filter(role="regular").select_related("item").first().item
    dataset = Dataset.objects.get(name="phantoms")
    master = np.asarray(load_master(regular.master_file)).astype(np.float32) - 1024
    twin = create_pool_item(values=master, hounsfield=True, modality="CT", origin="real", dataset=dataset,
                            source_sha256="f" * 64, source_group="patient:twin")
    nearly = create_pool_item(values=master + np.random.default_rng(0).normal(0, 3, master.shape), hounsfield=True,
                              modality="CT", origin="real", dataset=dataset, source_sha256="e" * 64,
                              source_group="patient:nearly")
    calibration = study.cases.get(role="calibration", item__origin="real")
    # Written by hand (drawing would never do this): a duplicate, a near-copy, and a calibration case of a case's group.
    StudyCase.objects.create(study=study, item=twin, role="regular")
    StudyCase.objects.create(study=study, item=nearly, role="regular")
    for item in (twin, nearly):  # as preparing would write them
        ensure_rendition(item, *study.config["presets"]["CT/2d"])
    PoolItem.objects.filter(pk=calibration.item_id).update(source_group=regular.source_group)
    audit = run_leak_audit(study)
    text = "; ".join(audit["problems"])
    assert not audit["ok"]
    assert "show identical pixels" in text and f"item #{twin.pk}" in text
    assert "calibration case(s) share a source group with cases to judge" in text
    assert any("near-duplicates" in w and f"item #{nearly.pk}" in w for w in audit["warnings"])
