"""Analyst dashboard, analysis JSON, charts and exports (coordinators and analysts only)."""

from django.contrib.auth.mixins import PermissionRequiredMixin
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.generic import TemplateView, View

from readerstudy.accounts.permissions import EXPORT_STUDIES, VIEW_RESULTS, VIEW_STUDIES
from readerstudy.studies.models import Study

from .forms import SampleSizeForm

# The statistics modules (scipy, pandas, statsmodels, matplotlib) are imported by the views that use
# them, not with the URL conf: a web process that never draws a chart does not load them.


class AnalysisMixin(PermissionRequiredMixin):
    permission_required = VIEW_RESULTS

    def dispatch(self, request, *args, **kwargs):
        from .analysis import OptionError

        try:
            return super().dispatch(request, *args, **kwargs)
        except OptionError as exc:
            return JsonResponse({"error": str(exc)}, status=400)

    def get_study(self) -> Study:
        return get_object_or_404(Study, slug=self.kwargs["slug"])

    def options(self) -> dict:
        from .analysis import analysis_options

        return analysis_options(self.request.GET)

    def analysis(self, study):
        """(key, result, None) when the analysis is ready, (key, None, job) while a job computes it."""
        from .analysis import analysis_or_job

        return analysis_or_job(study, self.request.user, **self.options())


class DashboardView(AnalysisMixin, TemplateView):
    template_name = "stats/dashboard.html"
    option_error = None

    def options(self) -> dict:
        """A bad query parameter shows the page with the defaults and says why (JSON clients get a 400)."""
        from .analysis import OptionError, analysis_options

        try:
            return analysis_options(self.request.GET)
        except OptionError as exc:
            self.option_error = str(exc)
            return analysis_options({})

    def get(self, request, *args, **kwargs):
        context = self.get_context_data(**kwargs)
        if context["job"] is not None:  # being computed: the page shows the progress and reloads itself
            response = self.response_class(request, ["stats/computing.html"], context)
            if not context["job"].is_finished:
                response["Refresh"] = "2"
            response["Cache-Control"] = "no-store"
            return response
        return self.render_to_response(context)

    def get_context_data(self, **kwargs):
        from . import charts
        from .agreement import PERCENT_AGREEMENT_CONVENTION
        from .detection import POLICIES
        from .proportions import METHODS

        study = self.get_study()
        options = self.options()
        key, analysis, job = self.analysis(study)
        # Charts are drawn from the very result the page shows (`state`), even if answers arrive meanwhile.
        query = f"unsure={options['policy']}&ci={options['ci_method']}"
        return super().get_context_data(
            study=study, analysis=analysis, job=job, state=key, policies=POLICIES, ci_methods=METHODS, query=query,
            charts=charts.CHARTS, metric_keys=["accuracy", "sensitivity", "specificity", "ppv", "npv"],
            option_error=self.option_error, agreement_convention=PERCENT_AGREEMENT_CONVENTION,
            random_effects_figures=("accuracy", "sensitivity", "specificity"), **options, **kwargs,
        )


def computing_response(job) -> JsonResponse:
    """202 Accepted while the analysis job runs (ask again after Retry-After); 500 with its error if it failed."""
    if job.status == job.Status.FAILED:
        return JsonResponse({"status": "failed", "job": job.pk, "error": job.error}, status=500)
    response = JsonResponse({"status": "computing", "job": job.pk, "job_status": job.status,
                             "percent": job.percent, "message": job.message}, status=202)
    response["Retry-After"] = "2"
    return response


class AnalysisJsonView(AnalysisMixin, View):
    def get(self, request, slug):
        _, result, job = self.analysis(self.get_study())
        return computing_response(job) if job is not None else JsonResponse(result)


class ChartView(AnalysisMixin, View):
    def get(self, request, slug, name):
        from django.core.cache import cache

        from . import charts
        from .analysis import ANALYSIS_CACHE_SECONDS, cached_result

        if name not in charts.RENDERERS:
            return JsonResponse({"error": f"unknown chart {name!r}"}, status=404)
        study = self.get_study()
        state = request.GET.get("state", "")
        result = cached_result(study, state)
        if result is None:
            state, result, job = self.analysis(study)
            if job is not None:
                return computing_response(job)
        # A chart of one analysed state never changes: drawn once, kept beside the analysis.
        png_key = f"{state}-chart-{name}"
        png = cache.get(png_key)
        if png is None:
            png = charts.RENDERERS[name](result)
            cache.set(png_key, png, ANALYSIS_CACHE_SECONDS)
        response = HttpResponse(png, content_type="image/png")
        response["Cache-Control"] = "private, no-cache"
        return response


class MarksView(AnalysisMixin, TemplateView):
    """Cases readers marked as looking synthetic somewhere, each with a heat map of the marks."""

    template_name = "stats/marks.html"

    def get_context_data(self, **kwargs):
        from . import marks

        study = self.get_study()
        by_case = marks.case_marks(study)
        cases = study.cases.filter(pk__in=by_case).select_related("item", "item__generator").order_by("pk")
        rows = [{"case": c, "marks": len(by_case[c.pk]["marks"]), "comments": by_case[c.pk]["comments"]}
                for c in cases]
        return super().get_context_data(study=study, rows=rows, **kwargs)


class MarksHeatmapView(AnalysisMixin, View):
    def get(self, request, slug, case_id):
        from . import marks

        study = self.get_study()
        case = get_object_or_404(study.cases.select_related("item"), pk=case_id)
        response = HttpResponse(marks.heatmap_png(study, case), content_type="image/png")
        response["Cache-Control"] = "private, no-cache"
        return response


class ExportView(AnalysisMixin, View):
    """Streamed downloads; the file name carries the study and the configuration hash."""

    permission_required = EXPORT_STUDIES

    def get(self, request, slug, name):
        from . import exports

        if name not in exports.EXPORTS:
            return JsonResponse({"error": f"unknown export {name!r}; choose from {', '.join(exports.EXPORTS)}"},
                                status=404)
        return exports.streaming_response(self.get_study(), name, request.user)


class SampleSizeView(PermissionRequiredMixin, TemplateView):
    """Plan readers and cases: interval width and power by simulation (stats/planning.py)."""

    permission_required = VIEW_STUDIES
    template_name = "stats/sample_size.html"

    def get_context_data(self, **kwargs):
        submitted = bool(self.request.GET)
        form = SampleSizeForm.with_defaults(self.request.GET) if submitted else SampleSizeForm()
        return super().get_context_data(form=form, result=form.planned() if submitted else None, **kwargs)
