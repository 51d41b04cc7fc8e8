from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.shortcuts import redirect
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
