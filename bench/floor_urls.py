"""The site's URL conf plus the answer-save floor for bench/load_bench.py: an authenticated JSON POST
(session, user, CSRF, the same middleware) that does one indexed UPDATE and answers JSON."""

import json

from django.db.models import F
from django.http import JsonResponse
from django.urls import path

from readerstudy.studies.models import AssignedCase
from readerstudy.urls import urlpatterns as site


def one_update(request, token):
    if not request.user.is_authenticated:
        return JsonResponse({"error": "log in"}, status=401)
    json.loads(request.body or b"{}")
    n = AssignedCase.objects.filter(token=token, assignment__reader=request.user).update(session=F("session"))
    return JsonResponse({"updated": n})


urlpatterns = [path("bench/floor/<str:token>", one_update)] + site
