"""Served files at the pace of a static file server: the view's decision, remembered for a moment.

A viewer fetches every slice of a case, hundreds of requests within seconds. The first request for a
case goes to `ServedFileView`, which authorises it as it authorises any reader request (session, user,
the reader's own case token, their position, the study's status). Its decision for that session and
case is then remembered in this process for `SERVED_FILE_AUTHORISATION_SECONDS` (default 2 s), and
`ServedFileMiddleware` answers the case's next file requests from it without the session, user, case
and rendition look-ups. Anything not remembered (another session or case, an expired decision, a
malformed URL) goes on to the view: the rules live only there, and a change (study closed, reader
logged out or moved on) takes effect within that many seconds. 0 turns remembering off.
"""

import threading
import time

from django.conf import settings
from django.http import HttpResponse
from django.urls import Resolver404, resolve
from django.utils.cache import patch_vary_headers

from .blinded import ServedCase

_MAX_DECISIONS = 20_000  # about 30 readers' worth of cases in flight; expired ones are dropped first
_decisions: dict[tuple[str, str], tuple[float, ServedCase]] = {}
_lock = threading.Lock()  # runserver and threaded workers share the dict


def lifetime() -> float:
    return float(getattr(settings, "SERVED_FILE_AUTHORISATION_SECONDS", 0))


def remember(session_key: str | None, token: str, served: ServedCase) -> None:
    """Record that this session may fetch this case's files, for `lifetime()` seconds from now."""
    seconds = lifetime()
    if not session_key or seconds <= 0:
        return
    now = time.monotonic()
    with _lock:
        if len(_decisions) >= _MAX_DECISIONS:
            for key in [k for k, (until, _) in _decisions.items() if until <= now]:
                del _decisions[key]
            if len(_decisions) >= _MAX_DECISIONS:
                _decisions.clear()
        _decisions[(session_key, token)] = (now + seconds, served)


def forget_all() -> None:
    with _lock:
        _decisions.clear()


def remembered(session_key: str | None, token: str) -> ServedCase | None:
    if not session_key:
        return None
    decision = _decisions.get((session_key, token))
    if decision is None or decision[0] <= time.monotonic():
        return None
    return decision[1]


def file_response(data: bytes) -> HttpResponse:
    """A served DICOM file as both paths send it (no name, date or ETag)."""
    response = HttpResponse(data, content_type="application/dicom")
    response["Cache-Control"] = "private, max-age=86400"
    response["Content-Length"] = str(len(data))
    return response


class ServedFileMiddleware:
    """Answer served-file requests that `ServedFileView` has just authorised for this session and case.

    It sits after the middleware that only add response headers and before the session, CSRF and
    authentication middleware, so a remembered request skips those and gets the same headers.
    """

    URL_NAMES = {"read-slice": "slice", "read-reformat": "reformat"}

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.remembered_response(request) if request.method == "GET" else None
        return response if response is not None else self.get_response(request)

    def remembered_response(self, request):
        if not _decisions:
            return None
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return None
        kind = self.URL_NAMES.get(match.url_name)
        if kind is None:
            return None
        served = remembered(request.COOKIES.get(settings.SESSION_COOKIE_NAME), match.kwargs["token"])
        if served is None:
            return None
        kwargs = {k: v for k, v in match.kwargs.items() if k != "token"}
        try:
            data = served.slice(**kwargs) if kind == "slice" else served.reformat(**kwargs)
        except OSError:  # the rendition was written again meanwhile (manage.py rerender): ask the view
            return None
        if data is None:
            return None  # the view answers 404 as usual
        response = file_response(data)
        patch_vary_headers(response, ("Cookie",))  # as the session middleware does on the view's path
        return response
