from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.generic import DetailView, ListView, View

from readerstudy.accounts.permissions import MANAGE_JOBS, VIEW_JOBS

from .models import Job
from .queue import JobError, cancel_job, retry_job


def job_state(job: Job) -> dict:
    return {
        "id": job.pk, "kind": job.kind, "title": job.title, "status": job.status,
        "status_display": job.get_status_display(), "percent": job.percent,
        "done": job.progress_done, "total": job.progress_total, "message": job.message,
        "error": job.error, "finished": job.is_finished, "cancel_requested": job.cancel_requested,
        "attempts": job.attempts, "not_handed_over": job.not_handed_over,
    }


class JobListView(PermissionRequiredMixin, ListView):
    permission_required = VIEW_JOBS
    template_name = "jobs/job_list.html"
    paginate_by = 50
    queryset = Job.objects.select_related("created_by")


class JobDetailView(PermissionRequiredMixin, DetailView):
    permission_required = VIEW_JOBS
    template_name = "jobs/job_detail.html"
    model = Job


class JobStateView(PermissionRequiredMixin, View):
    permission_required = VIEW_JOBS

    def get(self, request, pk):
        return JsonResponse(job_state(get_object_or_404(Job, pk=pk)))


class JobCancelView(PermissionRequiredMixin, View):
    permission_required = MANAGE_JOBS

    def post(self, request, pk):
        if not cancel_job(get_object_or_404(Job, pk=pk)):
            messages.error(request, "The job has already finished.")
        return redirect("job-detail", pk=pk)


class JobRetryView(PermissionRequiredMixin, View):
    """Queue a failed or cancelled job again; its work continues where it stopped."""

    permission_required = MANAGE_JOBS

    def post(self, request, pk):
        job = get_object_or_404(Job, pk=pk)
        try:
            retry_job(job)
        except JobError as exc:
            messages.error(request, f"Job #{job.pk} cannot be retried: {exc}.")
        else:
            messages.success(request, f"Job #{job.pk} queued again.")
        return redirect("job-detail", pk=pk)
