from django.conf import settings
from django.db import models


class ReaderProfile(models.Model):
    """What a study reports about a reader (experience breakdowns), never shown to other readers."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reader_profile")
    specialty = models.CharField(max_length=100, blank=True, help_text="e.g. thoracic radiology, neuroradiology")
    years_experience = models.PositiveSmallIntegerField(null=True, blank=True)
    is_trainee = models.BooleanField(default=False, help_text="Resident or fellow rather than consultant.")

    class Meta:
        permissions = [("manage_readers", "Create, invite and deactivate reader accounts")]

    def __str__(self):
        return f"Profile of {self.user}"
