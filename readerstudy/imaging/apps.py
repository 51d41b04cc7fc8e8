from django.apps import AppConfig


class ImagingConfig(AppConfig):
    name = "readerstudy.imaging"
    label = "imaging"
    verbose_name = "Image pool"

    def ready(self):
        from readerstudy.jobs.models import Job
        from readerstudy.jobs.queue import register

        register(Job.Kind.IMPORT, "readerstudy.imaging.tasks.import_upload",
                 retry_refusal="readerstudy.imaging.tasks.retry_refusal")
