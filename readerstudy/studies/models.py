import secrets

from django.conf import settings
from django.db import models


def new_case_token() -> str:
    return secrets.token_urlsafe(18)


class Study(models.Model):
    """A blinded reader study: which pool items are shown, to whom, and what is asked."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    name = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    instructions = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT, db_index=True)
    seed = models.BigIntegerField(help_text="Seed for case sampling and reader orders (stored for reproducibility).")
    config = models.JSONField(
        default=dict, blank=True, help_text="Case mix, questions, scales, presets and reading options."
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    audit = models.JSONField(default=dict, blank=True, editable=False, help_text="Result of the last leak audit.")
    editors = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="edited_studies",
        help_text="Coordinators who may change this study; other coordinators see it read-only.",
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"
        permissions = [
            ("manage_study", "Create studies, and configure, prepare, open and close those one edits"),
            ("view_results", "See studies' progress and analyses"),
            ("export_study", "Download studies' exports"),
        ]

    def __str__(self):
        return self.name


class StudyCase(models.Model):
    """A pool item taking part in a study."""

    class Role(models.TextChoices):
        REGULAR = "regular", "Regular"
        CALIBRATION = "calibration", "Calibration (shown first, excluded from results)"
        REPEAT = "repeat", "Repeat (intra-reader agreement)"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="cases")
    item = models.ForeignKey("imaging.PoolItem", on_delete=models.PROTECT, related_name="study_cases")
    role = models.CharField(max_length=12, choices=Role.choices, default=Role.REGULAR)
    repeat_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="repeats")
    trial = models.PositiveIntegerField(
        null=True, blank=True, help_text="Forced-choice designs: the trial this case is shown in (with its others)."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["study", "item"], condition=~models.Q(role="repeat"), name="item_once_per_study"
            )
        ]

    def __str__(self):
        return f"{self.study}: {self.item} ({self.role})"


class AssignmentQuerySet(models.QuerySet):
    def readers(self):
        """Real readers' assignments (without coordinators' previews)."""
        return self.filter(preview=False)


class Assignment(models.Model):
    """A reader's place in a study, with their own stored case order.

    A preview is a coordinator trying the study as a reader would: the same pages and
    files, but it counts nowhere (progress, results, exports) and its answers are
    deleted when the preview ends (see studies/preview.py).
    """

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="assignments")
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    order_seed = models.BigIntegerField()
    preview = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    objects = AssignmentQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "reader"], name="one_assignment_per_reader")]

    def __str__(self):
        return f"{self.reader} in {self.study}"


class AssignedCase(models.Model):
    """One case in one reader's worklist, addressed by an opaque token (the only id readers see)."""

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="cases")
    case = models.ForeignKey(StudyCase, on_delete=models.CASCADE, related_name="assigned")
    position = models.PositiveIntegerField()
    # Forced-choice trials put several cases at one position, one per panel (left to right, in the
    # reader's own random, balanced order); the answer is kept with panel 0. Single cases: panel 0.
    panel = models.PositiveSmallIntegerField(default=0)
    session = models.PositiveSmallIntegerField(default=1)
    token = models.CharField(max_length=32, unique=True, default=new_case_token, editable=False)

    class Meta:
        ordering = ["assignment", "position", "panel"]
        constraints = [
            models.UniqueConstraint(fields=["assignment", "position", "panel"], name="one_case_per_panel"),
        ]

    def __str__(self):
        return f"{self.assignment} #{self.position}"
