from django.apps import AppConfig


class StatsConfig(AppConfig):
    name = "readerstudy.stats"
    label = "stats"
    verbose_name = "Statistics and exports"

    def ready(self):
        from readerstudy.jobs.models import Job
        from readerstudy.jobs.queue import register

        # Not retried: asking for the analysis again starts a job for the state it is asked of.
        register(Job.Kind.ANALYSIS, "readerstudy.stats.tasks.analysis", retryable=False)
