import io

import numpy as np
from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.generic import FormView, TemplateView, View
from PIL import Image

from readerstudy.accounts.permissions import IMPORT_IMAGES, VIEW_POOL

from . import canonical, storage
from .forms import UploadForm
from .models import Dataset, Dimensionality, Modality, Origin, PoolItem
from .tasks import create_upload_job


class PoolListView(PermissionRequiredMixin, TemplateView):
    """The pool with provenance: coordinators and analysts only."""

    permission_required = VIEW_POOL
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


class PoolItemPreviewView(PermissionRequiredMixin, View):
    """PNG of an item's middle slice for coordinators (readers never get this URL's data)."""

    permission_required = VIEW_POOL

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


class UploadView(PermissionRequiredMixin, FormView):
    permission_required = IMPORT_IMAGES
    template_name = "imaging/upload.html"
    form_class = UploadForm

    def form_valid(self, form):
        job = create_upload_job(form.cleaned_data, self.request.user)
        messages.success(self.request, f"Upload received; import job #{job.pk} queued.")
        return redirect("job-detail", pk=job.pk)
