"""Draws give independent cases: source groups, duplicates, calibration roles, near-copies, training data, matrix."""

from collections import Counter

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from generation.models import Generator
from generation.pool import add_synthetic_item
from readerstudy.imaging.models import Dataset, Origin, PoolItem
from readerstudy.imaging.pool import create_pool_item
from readerstudy.jobs.models import Job
from readerstudy.studies.config import StudyConfigError
from readerstudy.studies.lifecycle import create_study, prepare_study
from readerstudy.studies.models import Study, StudyCase
from readerstudy.studies.sampling import assign_readers, draw_cases

from .studies import coordinator, make_user, phantom, readers

pytestmark = pytest.mark.django_db


@pytest.fixture
def generator(db):
    return Generator.objects.create(name="gen", kind=Generator.Kind.EXTERNAL, modalities=["XR", "CT", "MR"])


_seed = iter(range(10_000))


def real(group, shape=(48, 48), modality="CT", seed=None):
    dataset, _ = Dataset.objects.get_or_create(name="scans", defaults={"origin": Origin.REAL, "licence": "CC0"})
    s = next(_seed) if seed is None else seed
    values = phantom(shape, s).reshape((-1, *shape[-2:])) * 4095 - 1024
    return create_pool_item(values=values, hounsfield=True, modality=modality, origin=Origin.REAL, dataset=dataset,
                            source_group=group, source_sha256=f"{s:064x}", source_locator=f"{group} {s}")


def synthetic(generator, shape=(48, 48), modality="CT", **extra):
    s = next(_seed)
    return add_synthetic_item(phantom(shape, s), modality=modality, generator=generator, seed=s, **extra)


def study(name="S", seed=1, **config):
    return create_study(name=name, seed=seed, config={"strata": [], **config})


def ct2d(n, **config):
    return {"strata": [{"modality": "CT", "dimensionality": "2d", "cases": n}], **config}


def test_at_most_one_case_per_source_group_unless_the_coordinator_allows_more(generator):
    for group in ("patient:a", "patient:b", "patient:c"):
        for _ in range(4):
            real(group)
    for _ in range(8):
        synthetic(generator)
    draw = draw_cases(create_study(name="A", seed=1, config=ct2d(6)))
    groups = [item.source_group for item, _ in draw.regular if item.origin == Origin.REAL]
    assert len(groups) == 3 and len(set(groups)) == 3
    with pytest.raises(StudyConfigError, match="CT/2d: needs 4 real items from distinct source groups, "
                                               "the pool has 12 in 3 groups"):
        draw_cases(create_study(name="B", seed=1, config=ct2d(8)))
    allowed = create_study(name="C", seed=1, config=ct2d(8, sampling={"max_per_group": 2}))
    prepare_study(allowed)
    allowed.refresh_from_db()
    real_groups = Counter(c.item.source_group for c in allowed.cases.filter(item__origin=Origin.REAL))
    assert sorted(real_groups.values()) == [1, 1, 2] or max(real_groups.values()) <= 2
    assert allowed.config["sampling"]["max_per_group"] == 2  # recorded in the frozen configuration
    assert allowed.config["drawn"]["regular"]["CT/2d"] == {"real": 4, "synthetic": 4}


def test_a_volume_and_its_own_slices_are_never_both_cases(generator):
    volume = real("file:vol", shape=(12, 48, 48))
    slices = [real("file:vol") for _ in range(3)]  # slices of that volume share its group
    other = real("file:other")
    for shape in [(12, 48, 48), (48, 48)]:
        synthetic(generator, shape)
    config = {"strata": [{"modality": "CT", "dimensionality": "2d", "cases": 2},
                         {"modality": "CT", "dimensionality": "3d", "cases": 2}]}
    draw = draw_cases(create_study(name="V", seed=3, config=config))
    chosen = {item.pk for item, _ in draw.regular}
    # The volume is the only real volume, so its group goes to the volume stratum; the slice comes from elsewhere.
    assert volume.pk in chosen and other.pk in chosen and not chosen & {s.pk for s in slices}


def test_exact_duplicates_and_same_seed_samples_are_drawn_once(generator):
    for _ in range(4):
        real(f"patient:{next(_seed)}")
    first = synthetic(generator)
    # Another job with the same generator and seed made the same image again: same group and same pixels.
    copy = add_synthetic_item(phantom((48, 48), first.seed), modality="CT", generator=generator, seed=first.seed)
    assert copy.source_group == first.source_group and copy.content_sha256 == first.content_sha256
    # The same pixels under another group (e.g. a second import of one picture) are still one case.
    twin = real("patient:twin", seed=999)
    twin2 = real("patient:twin2", seed=999)
    assert twin.content_sha256 == twin2.content_sha256
    synthetic(generator)
    with pytest.raises(StudyConfigError, match="needs 3 synthetic items from distinct source groups, "
                                               "the pool has 3 in 2 groups"):
        draw_cases(create_study(name="D", seed=2, config=ct2d(6)))
    with pytest.raises(StudyConfigError, match="needs 6 real items .* the pool has 6 in 6 groups, 5 distinct images"):
        draw_cases(create_study(name="E", seed=2, config=ct2d(6, synthetic_fraction=0.0)))
    draw = draw_cases(create_study(name="F", seed=2, config=ct2d(5, synthetic_fraction=0.0)))
    assert len({item.content_sha256 for item, _ in draw.regular}) == 5  # 4 groups + one of the twins, not both


def test_one_item_per_generation_job_and_seed(generator):
    job = Job.objects.create(kind=Job.Kind.GENERATE, title="g", params={})
    item = add_synthetic_item(phantom((16, 16), 1), modality="CT", generator=generator, seed=1, job=job)
    assert item.generation_job == job
    with pytest.raises(IntegrityError), transaction.atomic():
        add_synthetic_item(phantom((16, 16), 2), modality="CT", generator=generator, seed=1, job=job)


def test_calibration_cases_come_from_groups_no_case_uses_here_or_elsewhere(generator):
    for n in range(6):
        real(f"patient:{n}")
        synthetic(generator)
    reading = {"calibration_cases": 2}
    a = create_study(name="A", seed=5, config=ct2d(4, reading=reading))
    prepare_study(a)
    calibration = a.cases.filter(role=StudyCase.Role.CALIBRATION)
    regular_groups = set(a.cases.exclude(role=StudyCase.Role.CALIBRATION).values_list("item__source_group", flat=True))
    assert calibration.count() == 2
    assert not regular_groups & set(calibration.values_list("item__source_group", flat=True))
    # Another study never makes A's calibration sources regular cases, nor A's regular cases calibration cases.
    for seed in range(5):
        b = create_study(name=f"B{seed}", seed=seed, config=ct2d(4, reading=reading))
        draw = draw_cases(b)
        b_regular = {i.source_group for i, _ in draw.regular}
        b_calibration = {i.source_group for i, _ in draw.calibration}
        assert not b_regular & set(calibration.values_list("item__source_group", flat=True))
        assert not b_calibration & regular_groups


def test_assigning_refuses_a_reader_who_would_see_a_truth_in_another_study(generator):
    items = [real(f"patient:{n}") for n in range(2)] + [synthetic(generator) for _ in range(2)]
    (reader,) = readers(1)
    a = create_study(name="A", seed=1, config=ct2d(2))
    b = create_study(name="B", seed=1, config=ct2d(2))
    # Cases written before drawing knew about roles (or by hand): one item is regular in A and calibration in B.
    StudyCase.objects.create(study=a, item=items[0], role=StudyCase.Role.REGULAR)
    StudyCase.objects.create(study=b, item=items[0], role=StudyCase.Role.CALIBRATION)
    StudyCase.objects.create(study=b, item=items[2], role=StudyCase.Role.REGULAR)
    Study.objects.filter(pk__in=[a.pk, b.pk]).update(config={**a.config, "presets": {"CT/2d": [48, 48, 1]}})
    assign_readers(a, [reader])
    with pytest.raises(StudyConfigError, match="opposite role .* in “A”"):
        assign_readers(b, [reader])
    assert not b.assignments.exists()
    other = make_user("other", "reader")
    assert assign_readers(b, [other])  # a reader who does not take part in A may read B


def test_near_copies_are_left_out_unless_allowed_with_a_recorded_reason(generator):
    for n in range(2):
        real(f"patient:{n}")
    copies = [synthetic(generator) for _ in range(2)]
    PoolItem.objects.filter(pk__in=[c.pk for c in copies]).update(quality={"near_copy": True})
    with pytest.raises(StudyConfigError, match="needs 2 synthetic items"):
        draw_cases(create_study(name="N", config=ct2d(4)))
    with pytest.raises(StudyConfigError, match="give a reason"):
        create_study(name="N2", config=ct2d(4, sampling={"allow_near_copies": True}))
    s = create_study(name="N3", config=ct2d(4, sampling={"allow_near_copies": True,
                                                          "near_copy_reason": "memorisation sub-study"}))
    prepare_study(s)
    s.refresh_from_db()
    assert s.cases.filter(item__in=copies).count() == 2
    assert s.config["sampling"]["near_copy_reason"] == "memorisation sub-study"


def test_a_generators_training_data_are_never_real_cases_beside_its_samples(generator):
    trained = [real("patient:trained") for _ in range(1)] + [real(f"patient:t{n}") for n in range(2)]
    held_out = [real(f"patient:h{n}") for n in range(2)]
    for _ in range(2):
        synthetic(generator)
    generator.config = {"training_groups": [i.source_group for i in trained]}
    generator.save()
    draw = draw_cases(create_study(name="T", seed=4, config=ct2d(4)))
    assert {i.pk for i, _ in draw.regular if i.origin == Origin.REAL} == {i.pk for i in held_out}
    assert draw.excluded["real items a study generator was trained on"] == 3


# --- no upsampling -----------------------------------------------------------------------------------


def test_a_matrix_above_the_smallest_item_is_refused_naming_the_items(client, generator):
    small = real("patient:s", shape=(32, 32))
    real("patient:b", shape=(64, 64))
    synthetic(generator, shape=(64, 64))
    with pytest.raises(StudyConfigError, match=rf"CT/2d: the matrix would upsample item #{small.pk} \(32x32\)"):
        create_study(name="M", config=ct2d(2, matrix={"size": 64, "depth": None}))
    create_study(name="M32", config=ct2d(2, matrix={"size": 32, "depth": None}))  # 32 upsamples nothing

    client.force_login(coordinator())
    page = client.post(reverse("study-create"), {
        "name": "Upsampled", "synthetic_percent": 50, "template": "none", "calibration_cases": 0,
        "repeat_cases": 0, "sessions": 1, "washout_hours": 0, "blank_ms": 0, "max_per_group": 1,
        "truth_count": "exact", "cases_ct_2d": 2, "matrix_size": 64,
    })
    assert page.status_code == 200 and f"would upsample item #{small.pk}" in page.content.decode()
    response = client.post("/api/v1/studies/", {"name": "Upsampled", "config": ct2d(2, matrix={
        "size": 64, "depth": None})}, content_type="application/json")
    assert response.status_code == 400 and f"#{small.pk}" in response.json()["error"]
    assert not Study.objects.filter(name="Upsampled").exists()


def test_volume_depth_above_the_shallowest_volume_is_refused(generator):
    shallow = real("patient:v", shape=(6, 48, 48))
    synthetic(generator, shape=(12, 48, 48))
    config = {"strata": [{"modality": "CT", "dimensionality": "3d", "cases": 2}], "matrix": {"size": None, "depth": 12}}
    with pytest.raises(StudyConfigError, match=rf"#{shallow.pk} \(48x48 x 6 slices\)"):
        create_study(name="Z", config=config)


def test_a_drr_belongs_to_its_volumes_group(generator):
    from generation.drr import make_drr

    volume = real("file:chest", shape=(12, 48, 48))
    drr = make_drr(volume)
    assert drr.origin == Origin.SYNTHETIC and drr.source_group == volume.source_group


def test_control_cases_hold_their_sources_out_of_the_real_arm(generator):
    from django.core.management import call_command

    from generation.control import NAME

    items = [real(f"patient:c{n}", shape=(64, 64)) for n in range(6)]
    real("patient:small", shape=(48, 48))  # smaller than the control's framing: never held out (upsampled)
    call_command("make_control", "--modality", "CT", "--dims", "2d", "--n", "2", "--seed", "1")
    control = Generator.objects.get(name=f"{NAME} 2d")
    made = list(control.items.all())
    assert control.is_control and len(made) == 2
    held_out = {m.source_group for m in made}
    assert set(control.config["training_groups"]) == held_out
    assert all(m.master_shape == [1, 64, 64] for m in made)
    with pytest.raises(Exception, match="needs 5 real CT 2d items of at least 64 pixels not held out yet; 4 are left"):
        call_command("make_control", "--modality", "CT", "--n", "5")
    config = ct2d(4, generators=[control.pk])
    draw = draw_cases(create_study(name="Ctl", seed=1, config=config))
    drawn_real = {i.source_group for i, _ in draw.regular if i.origin == Origin.REAL}
    assert not drawn_real & held_out and len(drawn_real) == 2
    assert {i.pk for i, _ in draw.regular if i.origin == Origin.SYNTHETIC} == {m.pk for m in made}
    assert len(items) == 6
    # The control is a generator like any other: the generation job ran it, and a retry would continue it.
    job = Job.objects.get(kind=Job.Kind.GENERATE, params__generator_id=control.pk, status=Job.Status.SUCCEEDED)
    assert sorted(job.generated_items.values_list("pk", flat=True)) == sorted(m.pk for m in made)


def test_coordinators_add_control_cases_from_the_generate_page(client, django_capture_on_commit_callbacks):
    for n in range(3):
        real(f"patient:p{n}", shape=(64, 64), modality="MR")
    control = Generator.objects.get(name="real-as-synthetic control 2d")
    client.force_login(coordinator())
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("generate"), {"generator": control.pk, "modality": "MR", "n": 2, "seed": 0,
                                                     "steps": 1, "prompt": ""})
    job = Job.objects.get(kind=Job.Kind.GENERATE, params__generator_id=control.pk)
    assert response.url == reverse("job-detail", args=[job.pk])
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert control.items.count() == 2 and len(job.result["held_out"]) == 2
