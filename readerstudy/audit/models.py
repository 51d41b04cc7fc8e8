from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """Who did what to a study, an export or an answer, and when (append-only)."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    action = models.CharField(max_length=50, db_index=True)
    study = models.ForeignKey("studies.Study", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="audit_events")
    target = models.CharField(max_length=200, blank=True, help_text="What was acted on, e.g. 'read 12'.")
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.target}"
