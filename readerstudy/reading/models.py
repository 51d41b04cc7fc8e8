from django.db import models


class Label(models.TextChoices):
    REAL = "real", "Real"
    FAKE = "fake", "Fake"
    UNSURE = "unsure", "Unsure"


class Read(models.Model):
    """A reader's answer for one assigned case; edits are kept as ReadRevision rows."""

    assigned_case = models.OneToOneField("studies.AssignedCase", on_delete=models.PROTECT, related_name="read")
    label = models.CharField(max_length=6, choices=Label.choices, blank=True)
    confidence = models.PositiveSmallIntegerField(null=True, blank=True)
    realism = models.PositiveSmallIntegerField(null=True, blank=True)
    anatomy = models.PositiveSmallIntegerField(null=True, blank=True)
    slice_consistency = models.PositiveSmallIntegerField(null=True, blank=True)
    answers = models.JSONField(default=dict, blank=True, help_text="Answers to any further questions.")
    started_at = models.DateTimeField(null=True, blank=True)
    saved_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    slices_visited = models.JSONField(default=list, blank=True)
    window_changes = models.PositiveIntegerField(default=0)
    telemetry_after_submit = models.JSONField(
        default=dict, blank=True,
        help_text="Totals including visits after the case was finished (duration_ms, window_changes, "
                  "slices_visited); the fields above stay as they were when the reader finished it.",
    )
    revision = models.PositiveIntegerField(default=0)
    idempotency_key = models.CharField(max_length=64, blank=True)

    class Meta:
        permissions = [("read_cases", "Be assigned studies and answer their cases")]

    def __str__(self):
        return f"Read of {self.assigned_case}"


class ReadRevision(models.Model):
    """A snapshot of a Read before it was changed, so no answer is ever lost."""

    read = models.ForeignKey(Read, on_delete=models.CASCADE, related_name="revisions")
    revision = models.PositiveIntegerField()
    snapshot = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["read", "revision"], name="unique_read_revision")]
