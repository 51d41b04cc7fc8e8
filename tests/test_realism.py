"""The realism number of a generator: a detector tells obviously synthetic samples from held-out real images,
cannot tell a real-as-synthetic control from them, and flags the control's samples as near-copies; measured
by a job, shown on the Generators pages, in the model card and the API."""

import numpy as np
import pytest
from django.urls import reverse

from generation.control import add_control_item, control_generator
from generation.models import Generator
from generation.pool import add_synthetic_item
from generation.realism import MIN_PER_CLASS, realism_report
from readerstudy.accounts.roles import COORDINATOR
from readerstudy.imaging.models import Origin, PoolItem
from readerstudy.jobs.models import Job

from .studies import make_pool, make_user

pytestmark = pytest.mark.django_db


def smooth_blob(seed: int, size: int = 48) -> np.ndarray:
    """What a weak generator makes: a smooth ring where the phantoms have a textured blob."""
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    radius = np.hypot(y - rng.uniform(-0.1, 0.1), x - rng.uniform(-0.1, 0.1))
    return (0.22 + 0.12 * np.exp(-((radius - 0.6) ** 2) * rng.uniform(15, 25)))[None].astype(np.float32)


@pytest.fixture
def pool():
    make_pool(real={("MR", "2d"): 40}, synthetic={})
    weak = Generator.objects.create(name="weak", kind=Generator.Kind.EXTERNAL, modalities=["MR"])
    for seed in range(20):
        add_synthetic_item(smooth_blob(1000 + seed), modality="MR", generator=weak, seed=seed)
    control = control_generator("2d", resolution=48, version="48px")  # the phantoms' own size: nothing resampled
    for seed, item in enumerate(PoolItem.objects.filter(origin=Origin.REAL).order_by("pk")[:20]):
        add_control_item(item, control, seed=seed)
    return weak, control


def test_a_detector_tells_a_weak_generator_and_not_the_real_as_synthetic_control(pool):
    weak, control = pool
    weak_report = realism_report(weak)["strata"]["MR/2d"]
    assert weak_report["real_held_out"] and weak_report["n_synthetic"] == 20 and weak_report["n_real"] == 40
    assert weak_report["detector"]["ci95"][0] > 0.75, weak_report["detector"]
    assert weak_report["memorisation"]["near_copy_rate"] == 0 and weak_report["diversity"] > 0

    control_report = realism_report(control)["strata"]["MR/2d"]
    # Held out: the 20 real items the controls were made from are left out of the comparison.
    assert control_report["real_held_out"] and control_report["n_real"] == 20
    low, high = control_report["detector"]["ci95"]
    assert low <= 0.5 <= high, control_report["detector"]
    assert control_report["memorisation"]["near_copy_rate"] == 1.0  # each is a real image: memorised, by design


def test_realism_is_measured_by_a_job_and_shown_on_the_pages_the_model_card_and_the_api(client, pool,
                                                                                        django_capture_on_commit_callbacks):
    weak, _ = pool
    client.force_login(make_user("coord", COORDINATOR))
    assert "Not measured yet" in client.get(reverse("generator-detail", args=[weak.pk])).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("generator-realism", args=[weak.pk]))
    job = Job.objects.get(kind=Job.Kind.REALISM)
    assert response.status_code == 302 and job.status == Job.Status.SUCCEEDED, job.error
    assert "detector AUC" in job.result["summary"]
    weak.refresh_from_db()
    auc = weak.realism["strata"]["MR/2d"]["detector"]["auc"]
    listing = client.get(reverse("generator-list")).content.decode()
    assert f"{auc} (" in listing
    detail = client.get(reverse("generator-detail", args=[weak.pk])).content.decode()
    assert "## Realism (measured by the platform)" in detail and "| MR/2d | 20 / 40 |" in detail
    assert 'id="realism-headline"' in detail
    api = client.get(f"/api/v1/generators/{weak.pk}/").json()
    assert api["realism"]["strata"]["MR/2d"]["detector"]["auc"] == auc
    assert client.post(f"/api/v1/generators/{weak.pk}/realism/").status_code == 202


def test_too_few_samples_give_a_reason_not_a_number(db):
    make_pool(real={("MR", "2d"): MIN_PER_CLASS}, synthetic={})
    few = Generator.objects.create(name="few", kind=Generator.Kind.EXTERNAL, modalities=["MR"])
    add_synthetic_item(smooth_blob(1), modality="MR", generator=few, seed=0)
    stratum = realism_report(few)["strata"]["MR/2d"]
    assert "needs at least" in stratum["detector"]["undefined"]
    assert "no samples" in realism_report(Generator.objects.create(name="none", kind="external"))["undefined"]


def test_the_command_measures_and_keeps_the_report(pool, capsys):
    from django.core.management import CommandError, call_command

    weak, _ = pool
    call_command("measure_realism", "weak", "--generator-version", "1")
    out = capsys.readouterr().out
    weak.refresh_from_db()
    assert "| MR/2d | 20 / 40 |" in out and f"detector AUC {weak.realism['strata']['MR/2d']['detector']['auc']}" in out
    with pytest.raises(CommandError, match="no generator named 'nobody'"):
        call_command("measure_realism", "nobody")
