import io
import re
import shutil

import numpy as np
from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.generic import FormView, TemplateView, View
from PIL import Image

from readerstudy.accounts.roles import ANALYST, COORDINATOR, RoleRequiredMixin
from readerstudy.jobs.models import Job

from . import canonical, storage
from .forms import UploadForm
from .models import Dataset, Dimensionality, Modality, Origin, PoolItem
from .tasks import import_upload, upload_dir


class PoolListView(RoleRequiredMixin, TemplateView):
    """The pool with provenance: coordinators and analysts only."""

    roles = (COORDINATOR, ANALYST)
    template_name = "imaging/pool_list.html"
    page_size = 50

    def get_context_data(self, **kwargs):
        qs = PoolItem.objects.select_related("dataset", "generator").order_by("-created_at", "-id")
        filters = {}
        for key, choices in (("modality", Modality), ("origin", Origin), ("dimensionality", Dimensionality)):
            value = self.request.GET.get(key)
            if value in choices.values:
                qs = qs.filter(**{key: value})
                filters[key] = value
        if (dataset := self.request.GET.get("dataset", "")).isdigit():
            qs = qs.filter(dataset_id=int(dataset))
            filters["dataset"] = int(dataset)
        page = Paginator(qs, self.page_size).get_page(self.request.GET.get("page"))
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        return super().get_context_data(
            page=page, filters=filters, query=query, datasets=Dataset.objects.all(),
            modalities=Modality.choices, origins=Origin.choices, dimensionalities=Dimensionality.choices, **kwargs,
        )


class PoolItemPreviewView(RoleRequiredMixin, View):
    """PNG of an item's middle slice for coordinators (readers never get this URL's data)."""

    roles = (COORDINATOR, ANALYST)

    def get(self, request, pk):
        item = get_object_or_404(PoolItem, pk=pk)
        master = storage.load_master(item.master_file)
        plane = np.asarray(master[master.shape[0] // 2], dtype=np.float32)
        if item.modality == Modality.CT:
            spec = canonical.MODALITY_SPECS["CT"]
            centre = spec.window_center - spec.rescale_intercept
            lo, hi = centre - spec.window_width / 2, centre + spec.window_width / 2
        else:
            lo, hi = 0.0, float(canonical.CODE_MAX)
        pixels = np.clip((plane - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        response = HttpResponse(buffer.getvalue(), content_type="image/png")
        response["Cache-Control"] = "private, max-age=3600"
        return response


def _safe_name(index: int, name: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name.rsplit("/", 1)[-1]).strip("._") or "file"
    return f"{index:05d}_{base[:100]}"


class UploadView(RoleRequiredMixin, FormView):
    roles = (COORDINATOR,)
    template_name = "imaging/upload.html"
    form_class = UploadForm

    def form_valid(self, form):
        data = form.cleaned_data
        with transaction.atomic():
            dataset = data["dataset"] or Dataset.objects.create(
                name=data["new_dataset"].strip(), origin=Origin.REAL,
                licence=data["licence"].strip(), source=data["source"],
            )
            job = Job.objects.create(
                kind=Job.Kind.IMPORT,
                title=f"Upload of {len(data['uploads'])} file(s) into {dataset.name}",
                created_by=self.request.user,
                params={
                    "modality": data["modality"], "dataset_id": dataset.pk, "body_part": data["body_part"],
                    "layout": data["layout"], "slices": data["slices"],
                },
            )
            target = upload_dir(job)
            target.mkdir(parents=True, exist_ok=True)
            try:
                for i, upload in enumerate(data["uploads"]):
                    with open(target / _safe_name(i, upload.name), "wb") as fh:
                        for chunk in upload.chunks():
                            fh.write(chunk)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)  # the job row rolls back with it
                raise
            transaction.on_commit(lambda: _enqueue(job))
        messages.success(self.request, f"Upload received; import job #{job.pk} queued.")
        return redirect("job-detail", pk=job.pk)


def _enqueue(job: Job) -> None:
    result = import_upload.enqueue(job.pk)
    Job.objects.filter(pk=job.pk).update(task_id=str(result.id))
