"""Fuzz the REST API from its own OpenAPI schema (schemathesis): no request may cause a server error.

Runs as an admin (so requests get past permissions into validation), against a
database holding a small open study, with a bounded number of examples per
operation so CI stays fast.
"""

import pytest
from django.core.handlers.wsgi import WSGIHandler
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings

schemathesis = pytest.importorskip("schemathesis", reason="!!! SKIPPED: schemathesis is not installed !!!")

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
schema.app = WSGIHandler()


@pytest.fixture
def admin_headers(transactional_db):
    from django.contrib.auth.models import User
    from knox.models import AuthToken

    from .studies import make_pool, open_study_for, readers

    make_pool(real={("CT", "2d"): 2}, synthetic={("CT", "2d"): 2})
    open_study_for(readers(2), {("CT", "2d"): 4}, name="Fuzzed")
    admin = User.objects.create_superuser("fuzz-admin", password="fuzz-password-1")
    return {"Authorization": f"Token {AuthToken.objects.create(user=admin)[1]}"}


@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_request_causes_a_server_error(case, admin_headers):
    from schemathesis.checks import not_a_server_error

    case.call_and_validate(headers=admin_headers, checks=[not_a_server_error])
