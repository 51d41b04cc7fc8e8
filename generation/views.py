from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.shortcuts import redirect
from django.shortcuts import get_object_or_404
from django.views import View
from django.views.generic import DetailView, FormView, ListView

from readerstudy.accounts.permissions import GENERATE_IMAGES, VIEW_GENERATORS

from .forms import GenerateForm
from .generate import create_generation_job
from .models import Generator


class GeneratorListView(PermissionRequiredMixin, ListView):
    permission_required = VIEW_GENERATORS
    model = Generator
    template_name = "generation/generator_list.html"


class GeneratorDetailView(PermissionRequiredMixin, DetailView):
    permission_required = VIEW_GENERATORS
    model = Generator
    template_name = "generation/generator_detail.html"

    def get_context_data(self, **kwargs):
        from .realism import model_card_section

        return super().get_context_data(realism_card=model_card_section(self.object.realism), **kwargs)


class MeasureRealismView(PermissionRequiredMixin, View):
    """POST: queue the realism job of a generator (detector AUC, memorisation, diversity)."""

    permission_required = GENERATE_IMAGES

    def post(self, request, pk):
        from .realism import create_realism_job

        job = create_realism_job(get_object_or_404(Generator, pk=pk), user=request.user)
        messages.success(request, f"Realism job #{job.pk} queued.")
        return redirect("job-detail", pk=job.pk)


class GenerateView(PermissionRequiredMixin, FormView):
    permission_required = GENERATE_IMAGES
    form_class = GenerateForm
    template_name = "generation/generate.html"

    def get_initial(self):
        return {"generator": self.request.GET.get("generator")}

    def form_valid(self, form):
        d = form.cleaned_data
        job = create_generation_job(d["generator"], d["modality"], d["n"], d["seed"], d["steps"], d["prompt"],
                                    user=self.request.user, enqueue=True)
        messages.success(self.request, f"Generation job #{job.pk} queued.")
        return redirect("job-detail", pk=job.pk)
