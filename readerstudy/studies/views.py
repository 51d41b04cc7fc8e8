"""Coordinator pages: configure, prepare, audit, assign, open and close studies; follow progress."""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.generic import FormView, TemplateView, View

from readerstudy.accounts.permissions import MANAGE_STUDIES, VIEW_RESULTS, VIEW_STUDIES, can_edit_study
from readerstudy.jobs.models import Job

from . import lifecycle, preview, sampling, scales
from .config import StudyConfigError, regular_case_count, stratum_key, validate_config
from .forms import STRATUM_LABELS, ReadersForm, StudyForm
from .models import Study
from .preview import preview_of
from .progress import study_progress


class StudyMixin(PermissionRequiredMixin):
    """A page about one study; with `edits_study`, only for its editors (others see it read-only)."""

    permission_required = MANAGE_STUDIES
    edits_study = True

    def get_study(self) -> Study:
        if not hasattr(self, "_study"):
            self._study = get_object_or_404(Study, slug=self.kwargs["slug"])
        return self._study

    def has_permission(self):
        if not super().has_permission():
            return False
        if self.edits_study and "slug" in self.kwargs and not can_edit_study(self.request.user, self.get_study()):
            editors = ", ".join(self.get_study().editors.values_list("username", flat=True))
            raise PermissionDenied(f"You can see this study but not change it; its editors ({editors}) can "
                                   "add you.")
        return True


class StudyListView(PermissionRequiredMixin, TemplateView):
    permission_required = VIEW_STUDIES
    template_name = "studies/study_list.html"

    def get_context_data(self, **kwargs):
        studies = Study.objects.annotate(
            n_cases=Count("cases", filter=~Q(cases__role="calibration"), distinct=True),
            n_readers=Count("assignments", filter=Q(assignments__preview=False), distinct=True),
            n_completed=Count("assignments", filter=Q(assignments__preview=False,
                                                      assignments__completed_at__isnull=False), distinct=True),
        )
        return super().get_context_data(studies=studies, **kwargs)


def _pool_rows() -> list[dict]:
    return [{"label": STRATUM_LABELS[key], **row} for key, row in sampling.pool_summary().items()]


def _warn_if_infeasible(request, study):
    problem = lifecycle.feasibility_problems(study)
    if problem:
        messages.warning(request, f"Saved, but the pool cannot supply it yet: {problem}")


def _planning_link(study=None) -> str:
    """The sample-size page prefilled with the study's regular cases, margin and readers (if assigned)."""
    query = {}
    if study is not None:
        query = {"cases": regular_case_count(study.config) or None,
                 "margin": study.config["analysis"]["equivalence_margin"],
                 "readers": study.assignments.filter(preview=False).count() or None}
    return reverse("sample-size") + "?" + urlencode({k: v for k, v in query.items() if v})


class StudyCreateView(StudyMixin, FormView):
    template_name = "studies/study_form.html"
    form_class = StudyForm

    def get_initial(self):
        return {"criteria": StudyForm.base_fields["criteria"].initial}

    def form_valid(self, form):
        study = lifecycle.create_study(
            name=form.cleaned_data["name"], instructions=form.cleaned_data["instructions"],
            config=form.config, created_by=self.request.user, seed=form.cleaned_data.get("seed"),
        )
        messages.success(self.request, f"Study “{study.name}” created. Next: prepare it to draw its cases.")
        _warn_if_infeasible(self.request, study)
        return redirect("study-detail", slug=study.slug)

    def get_context_data(self, **kwargs):
        return super().get_context_data(pool=_pool_rows(), planning_link=_planning_link(), **kwargs)


class StudyUpdateView(StudyMixin, FormView):
    template_name = "studies/study_form.html"
    form_class = StudyForm

    def dispatch(self, request, *args, **kwargs):
        if request.user.is_authenticated and self.get_study().status != Study.Status.DRAFT:
            messages.error(request, "Only a draft study can be edited; its configuration is frozen once opened.")
            return redirect("study-detail", slug=self.kwargs["slug"])
        return super().dispatch(request, *args, **kwargs)

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "study": self.get_study()}

    def get_context_data(self, **kwargs):
        study = self.get_study()
        return super().get_context_data(study=study, pool=_pool_rows(), planning_link=_planning_link(study), **kwargs)

    def form_valid(self, form):
        study = self.get_study()
        changed = lifecycle.update_study(study, self.request.user, name=form.cleaned_data["name"],
                                         instructions=form.cleaned_data["instructions"], config=form.config)
        note = " Cases were drawn with the old settings: prepare the study again." \
            if "config" in changed and study.cases.exists() else ""
        messages.success(self.request, "Study saved." + note)
        _warn_if_infeasible(self.request, study)
        return redirect("study-detail", slug=study.slug)


class StudyDetailView(StudyMixin, TemplateView):
    permission_required = VIEW_STUDIES
    edits_study = False
    template_name = "studies/study_detail.html"

    def get_context_data(self, **kwargs):
        study = self.get_study()
        config = validate_config(study.config)
        cases = study.cases.select_related("item", "item__generator", "item__dataset").order_by("role", "pk")
        strata = [
            {"label": STRATUM_LABELS[stratum_key(s["modality"], s["dimensionality"])], "cases": s["cases"],
             "preset": config["presets"].get(stratum_key(s["modality"], s["dimensionality"]))}
            for s in config["strata"]
        ]
        return super().get_context_data(
            study=study, config=config, strata=strata, cases=cases, n_regular=regular_case_count(config),
            criteria=[scales.CRITERIA[c].lower() for c in config["questions"]["criteria"]],
            assignments=study.assignments.readers().select_related("reader").order_by("reader__username"),
            readers_form=ReadersForm(initial={"readers": study.assignments.readers().values_list("reader_id",
                                                                                               flat=True)}),
            preview=preview_of(study, self.request.user),
            can_edit=can_edit_study(self.request.user, study),
            editors=sorted(study.editors.values_list("username", flat=True)),
            last_job=Job.objects.filter(kind__in=[Job.Kind.PREPARE_STUDY, Job.Kind.AUDIT_STUDY],
                                        params__study_id=study.pk).order_by("-created_at", "-pk").first(),
            **kwargs,
        )


class StudyActionView(StudyMixin, View):
    """POST-only actions; domain errors become messages on the study page. Cloning is open to every
    coordinator (the copy is theirs); everything else to the study's editors."""

    def has_permission(self):
        self.edits_study = self.kwargs.get("action") != "clone"
        return super().has_permission()

    def post(self, request, slug, action):
        study = self.get_study()
        try:
            if action == "prepare":
                job = lifecycle.create_prepare_job(study, request.user)
                return redirect("job-detail", pk=job.pk)
            if action == "audit":
                job = lifecycle.create_audit_job(study, request.user)
                return redirect("job-detail", pk=job.pk)
            if action == "open":
                lifecycle.open_study(study, request.user)
                messages.success(request, "The study is open: assigned readers see it on their worklist.")
            elif action == "close":
                if request.POST.get("confirm") != "yes":
                    raise StudyConfigError("tick “Readers can no longer change their answers” to close the study")
                lifecycle.close_study(study, request.user)
                messages.success(request, "The study is closed. Answers are kept; readers can no longer change them.")
            elif action == "reopen":
                lifecycle.reopen_study(study, request.user, reason=request.POST.get("reason", ""),
                                       confirm=request.POST.get("confirm") == "yes")
                messages.success(request, "The study is open again; the reason is in the audit log. Export again "
                                          "once reading ends: earlier exports no longer match.")
            elif action == "readers":
                self._readers(request, study)
            elif action == "editors":
                names = request.POST.get("editors", "").replace(",", " ").split()
                lifecycle.set_editors(study, names, request.user)
                messages.success(request, "Editors: " + ", ".join(sorted(names)) + ".")
            elif action == "preview":
                preview.start_preview(study, request.user)  # the reader's pages say it is a preview
                return redirect("read-study", slug=study.slug)
            elif action == "end-preview":
                discarded = preview.end_preview(study, request.user)
                messages.success(request, f"Preview ended; {discarded} answer(s) discarded.")
            elif action == "clone":
                copy = lifecycle.clone_study(study, request.user)
                messages.success(request, f"“{copy.name}” is a new draft with the same settings; edit it, then prepare it.")
                return redirect("study-edit", slug=copy.slug)
            else:
                messages.error(request, f"Unknown action {action!r}.")
        except StudyConfigError as exc:
            messages.error(request, str(exc))
        return redirect("study-detail", slug=study.slug)

    def _readers(self, request, study):
        form = ReadersForm(request.POST)
        if not form.is_valid():
            raise StudyConfigError("choose readers from the list")
        wanted = set(form.cleaned_data["readers"])
        current = {a.reader for a in study.assignments.readers().select_related("reader")}
        added = sampling.assign_readers(study, sorted(wanted - current, key=lambda u: u.pk), request.user)
        removed, kept = 0, []
        for reader in current - wanted:
            try:
                sampling.unassign_reader(study, reader, request.user)
                removed += 1
            except StudyConfigError as exc:
                kept.append(str(exc))
        messages.success(request, f"{len(added)} reader(s) added, {removed} removed.")
        for text in kept:
            messages.error(request, text)


class StudyProgressView(StudyMixin, TemplateView):
    permission_required = VIEW_RESULTS
    edits_study = False
    template_name = "studies/study_progress.html"

    def get_context_data(self, **kwargs):
        study = self.get_study()
        rows = study_progress(study)
        return super().get_context_data(
            study=study, rows=rows, done=sum(r.done for r in rows), total=sum(r.total for r in rows),
            refresh_url=reverse("study-progress", kwargs={"slug": study.slug}), **kwargs,
        )
