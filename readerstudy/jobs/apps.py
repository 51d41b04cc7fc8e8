from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "readerstudy.jobs"
    label = "jobs"
    verbose_name = "Background jobs"
