from django.contrib import messages
from django.shortcuts import redirect
from django.views.generic import DetailView, FormView, ListView

from readerstudy.accounts.roles import ANALYST, COORDINATOR, RoleRequiredMixin

from .forms import GenerateForm
from .generate import create_generation_job
from .models import Generator


class GeneratorListView(RoleRequiredMixin, ListView):
    roles = (COORDINATOR, ANALYST)
    model = Generator
    template_name = "generation/generator_list.html"


class GeneratorDetailView(RoleRequiredMixin, DetailView):
    roles = (COORDINATOR, ANALYST)
    model = Generator
    template_name = "generation/generator_detail.html"


class GenerateView(RoleRequiredMixin, FormView):
    roles = (COORDINATOR,)
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
