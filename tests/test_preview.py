"""A coordinator tries a study as a reader: the reader's pages, answers that count nowhere and are discarded."""

import json

import pytest
from django.test import Client
from django.urls import reverse

from readerstudy.audit.models import AuditEvent
from readerstudy.reading.models import Read, ReadRevision
from readerstudy.stats.analysis import analyse
from readerstudy.studies.config import StudyConfigError
from readerstudy.studies.lifecycle import close_study, create_study, open_study, prepare_study
from readerstudy.studies.models import Assignment
from readerstudy.studies.preview import end_preview, start_preview
from readerstudy.studies.progress import study_progress
from readerstudy.studies.sampling import assign_readers

from .studies import coordinator, make_pool, readers

pytestmark = pytest.mark.django_db
CONFIG = {"strata": [{"modality": "CT", "dimensionality": "2d", "cases": 4}],
          "questions": {"confidence": True, "template": "none"}}


def answer_all(client, reader_url_slug):
    """Read every case from the resume page on, as a reader's browser would; returns the answers posted."""
    posted = 0
    while True:
        response = client.get(reverse("read-study", args=[reader_url_slug]))
        if "/case/" not in response.url:
            return posted, response.url
        token = response.url.rstrip("/").split("/")[-1]
        state = client.get(reverse("read-state", args=[token])).json()
        assert state["preview"]["end"] == reverse("study-action", args=[reader_url_slug, "end-preview"])
        body = {"label": "real", "confidence": 3, "submit": True, "idempotency_key": f"preview-{token}"}
        reply = client.post(reverse("read-answer", args=[token]), json.dumps(body), content_type="application/json")
        assert reply.status_code == 200, reply.json()
        posted += 1


def test_a_coordinator_previews_a_prepared_draft_and_nothing_of_it_counts():
    make_pool(real={("CT", "2d"): 2}, synthetic={("CT", "2d"): 2})
    boss = coordinator()
    study = create_study(name="Preview me", config=CONFIG, seed=3)
    with pytest.raises(StudyConfigError, match="prepare the study first"):
        start_preview(study, boss)
    prepare_study(study)
    client = Client()
    client.force_login(boss)
    detail = client.get(reverse("study-detail", args=[study.slug])).content.decode()
    assert "Try as a reader" in detail
    started = client.post(reverse("study-action", args=[study.slug, "preview"]))
    assert started.url == reverse("read-study", args=[study.slug])
    first = client.get(started.url)
    viewer = client.get(first.url).content.decode()
    assert "your answers are not kept" in viewer and "End preview" in viewer
    posted, end = answer_all(client, study.slug)
    assert posted == 4 and end == reverse("read-done", args=[study.slug])
    assert "This was a preview" in client.get(end).content.decode()
    assert Read.objects.filter(submitted_at__isnull=False).count() == 4

    # Counts nowhere: progress, analysis, exports, opening.
    assert study_progress(study) == []
    assert analyse(study)["counts"]["answers"] == 0
    with pytest.raises(StudyConfigError, match="assign at least one reader"):
        open_study(study)
    assert client.get(reverse("worklist")).content.decode().count("Preview me") == 0

    ended = client.post(reverse("study-action", args=[study.slug, "end-preview"]))
    assert ended.status_code == 302
    assert not Read.objects.exists() and not ReadRevision.objects.exists() and not Assignment.objects.exists()
    assert list(AuditEvent.objects.filter(action__startswith="study.preview").order_by("pk").values_list(
        "action", flat=True)) == [
        "study.preview_started", "study.preview_ended"]


def test_previews_end_when_cases_are_drawn_again_and_when_the_coordinator_becomes_a_reader():
    make_pool(real={("CT", "2d"): 3}, synthetic={("CT", "2d"): 3})
    boss = coordinator()
    boss.groups.add(*readers(1)[0].groups.all())  # also a reader
    study = create_study(name="Again", config=CONFIG, seed=4)
    prepare_study(study)
    assignment = start_preview(study, boss)
    first = assignment.cases.get(position=1, panel=0)
    from readerstudy.reading.answers import save_answer
    save_answer(first, {"label": "fake", "confidence": 2, "submit": True, "idempotency_key": "preview-one"})
    prepare_study(study)  # redrawing deletes the preview and its answers (they would block it otherwise)
    assert not Read.objects.exists() and not Assignment.objects.exists()
    start_preview(study, boss)
    assign_readers(study, [boss])
    assert list(Assignment.objects.values_list("preview", flat=True)) == [False]
    with pytest.raises(StudyConfigError, match="you are a reader of this study"):
        start_preview(study, boss)


def test_an_open_study_can_be_previewed_beside_its_readers_and_a_closed_one_cannot(settings):
    make_pool(real={("CT", "2d"): 2}, synthetic={("CT", "2d"): 2})
    boss = coordinator()
    (reader,) = readers(1)
    study = create_study(name="Open", config=CONFIG, seed=5)
    prepare_study(study)
    assign_readers(study, [reader])
    open_study(study)
    start_preview(study, boss)
    client = Client()
    client.force_login(boss)
    assert answer_all(client, study.slug)[0] == 4
    progress = study_progress(study)
    assert [(p.reader, p.done) for p in progress] == [("reader1", 0)]
    assert analyse(study)["counts"]["answers"] == 0
    export = b"".join(client.get(reverse("analysis-export", args=[study.slug, "answers.csv"])).streaming_content)
    assert export.decode().count("\n") == 1  # the header only
    assert end_preview(study, boss) == 4
    start_preview(study, boss)
    close_study(study)
    with pytest.raises(StudyConfigError, match="closed study"):
        start_preview(study, boss)
    assert client.get(reverse("read-study", args=[study.slug])).status_code == 302  # the old preview: closed
