from django.conf import settings
from django.db import models
from django.utils import timezone


class Job(models.Model):
    """One unit of long-running work (import, sampling, preparation, audit) with its progress.

    The django-tasks task carries only the job id; everything a person needs to
    follow, cancel or retry the work lives here, whichever task backend runs it.
    `attempts` numbers the runs: only the attempt that claimed the job may write
    its state (see `jobs.progress`). Created, cancelled and retried through `jobs.queue`.
    """

    class Kind(models.TextChoices):
        IMPORT = "import", "Import images"
        TRAIN = "train", "Train generator"
        GENERATE = "generate", "Generate synthetic images"
        PREPARE_STUDY = "prepare-study", "Prepare study"
        AUDIT_STUDY = "audit-study", "Leak audit of a study"
        ANALYSIS = "analysis", "Analysis of a study"
        REALISM = "realism", "Realism of a generator"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    title = models.CharField(max_length=200)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    message = models.CharField(max_length=500, blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    task_id = models.CharField(max_length=100, blank=True)
    single_flight_key = models.CharField(
        max_length=100, blank=True,
        help_text="Work that must run once per state (e.g. one analysis per set of answers): at most one "
                  "queued or running job holds a given key; asking again joins it.",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(
        default=timezone.now, help_text="When it was last handed to the task backend (created or retried)."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life from the worker running it (a timer, not progress)."
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("manage_jobs", "Cancel and retry jobs")]
        constraints = [
            models.UniqueConstraint(
                fields=["single_flight_key"], name="one_active_job_per_single_flight_key",
                condition=models.Q(status__in=["queued", "running"]) & ~models.Q(single_flight_key=""),
            ),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} #{self.pk}: {self.title}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def can_retry(self) -> bool:
        from .queue import retry_refusal

        return retry_refusal(self) is None

    @property
    def not_handed_over(self) -> bool:
        """Queued, but the task backend has not taken it (it was unreachable); `recover_jobs` retries."""
        return self.status == self.Status.QUEUED and not self.task_id

    @property
    def percent(self) -> int:
        if self.status == self.Status.SUCCEEDED:
            return 100
        if not self.progress_total:
            return 0
        return min(100, int(100 * self.progress_done / self.progress_total))
