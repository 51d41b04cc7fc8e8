"""Analyst dashboard, analysis JSON, charts and exports (coordinators and analysts only)."""

import hashlib

from django.core.cache import cache
from django.db.models import Count, Max
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.views.generic import TemplateView, View

from readerstudy.accounts.roles import ANALYST, COORDINATOR, RoleRequiredMixin
from readerstudy.reading.models import Read
from readerstudy.studies.models import Study

from . import charts, exports
from .analysis import analyse, config_hash
from .detection import POLICIES
from .proportions import METHODS

CACHE_SECONDS = 600


class BadOption(ValueError):
    pass


class AnalysisMixin(RoleRequiredMixin):
    roles = (COORDINATOR, ANALYST)

    def dispatch(self, request, *args, **kwargs):
        try:
            return super().dispatch(request, *args, **kwargs)
        except BadOption as exc:
            return JsonResponse({"error": str(exc)}, status=400)

    def get_study(self) -> Study:
        return get_object_or_404(Study, slug=self.kwargs["slug"])

    def options(self) -> dict:
        policy = self.request.GET.get("unsure", "exclude")
        ci = self.request.GET.get("ci", "wilson")
        if policy not in POLICIES:
            raise BadOption(f"unknown unsure policy {policy!r}; choose from {', '.join(POLICIES)}")
        if ci not in METHODS:
            raise BadOption(f"unknown interval method {ci!r}; choose from {', '.join(METHODS)}")
        return {"policy": policy, "ci_method": ci}

    def analysis(self, study) -> dict:
        """The analysis, cached until an answer or the configuration changes."""
        options = self.options()
        stamp = Read.objects.filter(assigned_case__assignment__study=study).aggregate(
            n=Count("pk"), last=Max("saved_at"))
        state = f"{study.pk}|{options['policy']}|{options['ci_method']}|{stamp['n']}|{stamp['last']}|{config_hash(study)}"
        key = "analysis-" + hashlib.sha256(state.encode()).hexdigest()
        result = cache.get(key)
        if result is None:
            result = analyse(study, **options)
            cache.set(key, result, CACHE_SECONDS)
        return result


class DashboardView(AnalysisMixin, TemplateView):
    template_name = "stats/dashboard.html"

    def get_context_data(self, **kwargs):
        study = self.get_study()
        options = self.options()
        query = f"unsure={options['policy']}&ci={options['ci_method']}"
        return super().get_context_data(
            study=study, analysis=self.analysis(study), policies=POLICIES, ci_methods=METHODS, query=query,
            charts=charts.CHARTS, metric_keys=["accuracy", "sensitivity", "specificity", "ppv", "npv"],
            **options, **kwargs,
        )


class AnalysisJsonView(AnalysisMixin, View):
    def get(self, request, slug):
        return JsonResponse(self.analysis(self.get_study()))


class ChartView(AnalysisMixin, View):
    def get(self, request, slug, name):
        if name not in charts.RENDERERS:
            return JsonResponse({"error": f"unknown chart {name!r}"}, status=404)
        response = HttpResponse(charts.RENDERERS[name](self.analysis(self.get_study())), content_type="image/png")
        response["Cache-Control"] = "private, no-cache"
        return response


EXPORTS = {
    "answers.csv": ("text/csv", lambda s: exports.csv_lines(exports.answer_csv_rows(s))),
    "cases.csv": ("text/csv", lambda s: exports.csv_lines(exports.case_csv_rows(s))),
    "imrmc.txt": ("text/plain", exports.imrmc_lines),
    "config.json": ("application/json", lambda s: iter([exports.frozen_config_json(s)])),
}


class ExportView(AnalysisMixin, View):
    """Streamed downloads; the file name carries the study and the configuration hash."""

    def get(self, request, slug, name):
        if name not in EXPORTS:
            return JsonResponse({"error": f"unknown export {name!r}; choose from {', '.join(EXPORTS)}"}, status=404)
        study = self.get_study()
        content_type, lines = EXPORTS[name]
        response = StreamingHttpResponse(lines(study), content_type=f"{content_type}; charset=utf-8")
        stem, ext = name.rsplit(".", 1)
        response["Content-Disposition"] = f'attachment; filename="{study.slug}-{stem}-{config_hash(study)[:8]}.{ext}"'
        response["Cache-Control"] = "no-store"
        return response
