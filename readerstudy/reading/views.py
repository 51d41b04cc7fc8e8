"""Reader pages and endpoints. Cases are found only through the reader's own opaque tokens."""

import json

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.generic import TemplateView, View

from readerstudy.studies.models import AssignedCase, Assignment

from .answers import AnswerError, save_answer
from .blinded import ServedCase, case_payload, next_case_payload, served_case
from .served_files import file_response, remember
from .worklist import readable, reader_assignments, reader_case, reader_position, visible_assignments

NO_STORE = "no-store"


def no_store(response):
    response["Cache-Control"] = NO_STORE
    return response


class ReaderCaseMixin(LoginRequiredMixin):
    """Resolve `token` to the logged-in reader's own case in a visible study, else 404."""

    any_panel = False  # served files may name any panel of a forced-choice trial

    def get_case(self) -> AssignedCase:
        return reader_case(self.request.user, self.kwargs["token"], any_panel=self.any_panel)


class JsonCaseMixin(ReaderCaseMixin):
    """JSON endpoints answer errors in JSON (401 when logged out, 404 for a case that is not theirs)."""

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return no_store(JsonResponse({"error": "log in first; unsaved answers stay in your browser"}, status=401))
        try:
            return super().dispatch(request, *args, **kwargs)
        except Http404 as exc:
            return no_store(JsonResponse({"error": str(exc)}, status=404))


class WorklistView(LoginRequiredMixin, TemplateView):
    template_name = "reading/worklist.html"

    def get_context_data(self, **kwargs):
        entries = []
        for assignment in reader_assignments(self.request.user):
            position = reader_position(assignment)
            entries.append({"assignment": assignment, "study": assignment.study, "position": position})
        return super().get_context_data(entries=entries, **kwargs)


class StudyResumeView(LoginRequiredMixin, View):
    """Send the reader to the case where they stopped (or the end page)."""

    def get(self, request, slug):
        assignment = get_object_or_404(visible_assignments(request.user), study__slug=slug)
        position = reader_position(assignment)
        if not readable(assignment):
            messages.info(request, f"“{assignment.study.name}” is closed; your answers are kept.")
            return redirect("worklist")
        if position.finished:
            return redirect("read-done", slug=slug)
        if position.locked_until:
            return no_store(redirect("read-break", slug=slug))
        return no_store(redirect("read-case", token=position.current["token"]))


class ReaderStudyMixin(LoginRequiredMixin):
    """The logged-in reader's own assignment in an open or closed study (else 404) and their position."""

    def get_assignment(self) -> Assignment:
        return get_object_or_404(visible_assignments(self.request.user), study__slug=self.kwargs["slug"])


class SessionBreakView(ReaderStudyMixin, TemplateView):
    """Between sessions: when the next one opens, with a countdown (the page reloads itself then)."""

    template_name = "reading/break.html"

    def get(self, request, *args, **kwargs):
        assignment = self.get_assignment()
        position = reader_position(assignment)
        if not position.locked_until or not readable(assignment):
            return redirect("read-study", slug=assignment.study.slug)
        current = position.current
        return no_store(self.render_to_response(self.get_context_data(
            study=assignment.study, position=position, opens_at=position.locked_until,
            opens_ms=int(position.locked_until.timestamp() * 1000),
            session=current["session"], sessions=position.config["reading"]["sessions"],
        )))


class CaseListView(ReaderStudyMixin, TemplateView):
    """The reader's cases in order, to go back to an answered one (only where going back is allowed)."""

    template_name = "reading/case_list.html"

    def get(self, request, *args, **kwargs):
        assignment = self.get_assignment()
        position = reader_position(assignment)
        if not readable(assignment) or not position.config["reading"]["allow_back"]:
            return redirect("read-study", slug=assignment.study.slug)
        current = position.current
        rows = [{"position": r["position"], "session": r["session"], "submitted": r["submitted"],
                 "current": current is not None and r["position"] == current["position"],
                 "token": r["token"] if position.may_open(r) else None} for r in position.rows]
        return no_store(self.render_to_response(self.get_context_data(
            study=assignment.study, position=position, rows=rows,
            sessions=position.config["reading"]["sessions"] > 1)))


class StudyDoneView(ReaderStudyMixin, TemplateView):
    """The end page, only once every case is answered (before that, back to where the reader stopped)."""

    template_name = "reading/done.html"

    def get(self, request, *args, **kwargs):
        assignment = self.get_assignment()
        position = reader_position(assignment)
        if not position.finished:
            return redirect("read-study", slug=assignment.study.slug)
        return self.render_to_response(self.get_context_data(
            study=assignment.study, position=position, preview=assignment.preview,
            end_url=reverse("study-action", kwargs={"slug": assignment.study.slug, "action": "end-preview"})))


class CaseView(ReaderCaseMixin, TemplateView):
    """The viewer page for one case; its data is embedded so a reload needs one request.

    The next case's page comes with it (an inert <template>), so that Finish shows it at once.
    """

    template_name = "reading/viewer.html"

    def get(self, request, *args, **kwargs):
        case = self.get_case()
        position, ok = openable(case)
        if not ok:
            return redirect("read-study", slug=case.assignment.study.slug)
        following = next_case_payload(case, position)
        response = self.render_to_response(self.get_context_data(
            payload=case_payload(case, position), next_payload=following,
            next_url=reverse("read-case", kwargs={"token": following["case"]["token"]}) if following else None))
        return no_store(response)


def openable(case: AssignedCase, files: bool = False):
    """(position, True) when the reader may open the case now: study open, case reached, no washout.

    With `files`, its served files: also those of the case after the current one (prefetched).
    """
    position = reader_position(case.assignment)
    allowed = position.may_fetch_files if files else position.may_open
    return position, readable(case.assignment) and allowed(position.row_of(case))


class CaseStateView(JsonCaseMixin, View):
    """The same data as JSON, for the viewer to re-sync after a lost connection."""

    def get(self, request, token):
        case = self.get_case()
        position, ok = openable(case)
        if not ok:
            return no_store(JsonResponse({"error": "this case cannot be opened now: cases are read in order, "
                                                   "and only while the study is open"}, status=409))
        return no_store(JsonResponse(case_payload(case, position)))


class ServedFileView(ReaderCaseMixin, View):
    """A served DICOM file of a case the reader may open now, with their own UIDs; no name, date or ETag.

    Its decision is remembered for a moment (served_files.py), so the case's next files skip the look-ups.
    """

    any_panel = True

    def served(self, served: ServedCase, **kwargs) -> bytes | None:
        raise NotImplementedError

    def get(self, request, token, **kwargs):
        case = self.get_case()
        if not openable(case, files=True)[1]:
            raise Http404("This case cannot be opened now.")
        served = served_case(case)
        data = None if served is None else self.served(served, **kwargs)
        if data is None:
            raise Http404("No such image.")
        remember(request.session.session_key, token, served)
        return file_response(data)


class SliceView(ServedFileView):
    """One axial slice."""

    def served(self, served, number):
        return served.slice(number)


class ReformatView(ServedFileView):
    """A coronal or sagittal reformat of a volume case (the 3-view layout), by the canonical writer."""

    def served(self, served, plane, number):
        return served.reformat(plane, number)


class AnswerView(JsonCaseMixin, View):
    """Autosave or submit an answer (JSON in, JSON out); safe to repeat with the same idempotency key."""

    def post(self, request, token):
        case = self.get_case()
        try:
            payload = json.loads(request.body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return no_store(JsonResponse({"error": "the body must be JSON"}, status=400))
        try:
            result = save_answer(case, payload)
        except AnswerError as exc:
            return no_store(JsonResponse(exc.as_dict(), status=exc.status))
        following, finished = result.pop("next_token"), result.pop("finished")
        if following:
            result["next"] = reverse("read-case", kwargs={"token": following})
        elif finished or result["answer"]["submitted"]:
            result["next"] = reverse("read-study", kwargs={"slug": case.assignment.study.slug})
        else:
            result["next"] = None
        return no_store(JsonResponse(result))
