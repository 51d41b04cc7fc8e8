"""Per-study editors: other coordinators see a study read-only, on the pages and in the API, until an
editor adds them; anyone who may manage studies can clone one (the copy is theirs)."""

import pytest
from django.urls import reverse

from readerstudy.accounts.roles import ANALYST, COORDINATOR
from readerstudy.audit.models import AuditEvent
from readerstudy.studies.lifecycle import create_study
from readerstudy.studies.models import Study

from .studies import make_user

pytestmark = pytest.mark.django_db
CONFIG = {"strata": [{"modality": "CT", "dimensionality": "2d", "cases": 4}]}


@pytest.fixture
def team():
    owner, other = make_user("owner", COORDINATOR), make_user("other", COORDINATOR)
    study = create_study(name="Owned study", config=CONFIG, created_by=owner)
    return owner, other, study


def test_a_coordinator_who_is_not_an_editor_sees_the_study_but_cannot_change_it(client, team):
    owner, other, study = team
    assert list(study.editors.all()) == [owner]
    client.force_login(other)
    page = client.get(reverse("study-detail", args=[study.slug]))
    assert page.status_code == 200 and b"you can see this study but not change it" in page.content
    assert b"Prepare: draw cases" not in page.content
    assert client.get(reverse("study-edit", args=[study.slug])).status_code == 403
    for action in ("prepare", "open", "editors", "preview"):
        assert client.post(reverse("study-action", args=[study.slug, action]),
                           {"editors": "other"}).status_code == 403, action
    api = client.patch(f"/api/v1/studies/{study.slug}", {"name": "taken over"}, content_type="application/json")
    assert api.status_code == 403 and "editors" in api.json()["error"]
    assert client.post(f"/api/v1/studies/{study.slug}/prepare").status_code == 403
    assert Study.objects.get(pk=study.pk).name == "Owned study"
    # Cloning is open to every coordinator: the copy is the cloner's.
    client.post(reverse("study-action", args=[study.slug, "clone"]))
    copy = Study.objects.exclude(pk=study.pk).get()
    assert list(copy.editors.all()) == [other]


def test_an_editor_adds_another_coordinator_who_may_then_change_it(client, team):
    owner, other, study = team
    client.force_login(owner)
    assert client.post(reverse("study-action", args=[study.slug, "editors"]), {"editors": "owner analyst"})
    assert list(study.editors.all()) == [owner]  # an analyst cannot be an editor: refused as a whole
    make_user("analyst", ANALYST)
    response = client.post(f"/api/v1/studies/{study.slug}/editors", {"editors": ["owner", "other"]},
                           content_type="application/json")
    assert response.status_code == 200 and sorted(response.json()["editors"]) == ["other", "owner"]
    assert AuditEvent.objects.filter(action="study.editors").count() == 1
    client.force_login(other)
    api = client.patch(f"/api/v1/studies/{study.slug}", {"name": "Shared study"}, content_type="application/json")
    assert api.status_code == 200 and Study.objects.get(pk=study.pk).name == "Shared study"
    assert client.post(f"/api/v1/studies/{study.slug}/editors", {"editors": []},
                       content_type="application/json").status_code == 400


def test_analysts_see_results_but_manage_nothing(client, team):
    _, _, study = team
    client.force_login(make_user("ana", ANALYST))
    assert client.get(reverse("study-detail", args=[study.slug])).status_code == 200
    assert client.get(reverse("analysis", args=[study.slug])).status_code == 200
    assert client.post(reverse("study-action", args=[study.slug, "clone"])).status_code == 403
    assert client.get(f"/api/v1/studies/{study.slug}/progress").status_code == 200
    assert client.post(f"/api/v1/studies/{study.slug}/editors", {"editors": ["ana"]},
                       content_type="application/json").status_code == 403
