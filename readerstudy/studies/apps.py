from django.apps import AppConfig


class StudiesConfig(AppConfig):
    name = "readerstudy.studies"
    label = "studies"
    verbose_name = "Reader studies"

    def ready(self):
        from readerstudy.jobs.models import Job
        from readerstudy.jobs.queue import register

        register(Job.Kind.PREPARE_STUDY, "readerstudy.studies.tasks.prepare",
                 retry_refusal="readerstudy.studies.tasks.prepare_retry_refusal")
        register(Job.Kind.AUDIT_STUDY, "readerstudy.studies.tasks.audit",
                 retry_refusal="readerstudy.studies.tasks.audit_retry_refusal")
