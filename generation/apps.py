from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "generation"
    verbose_name = "Generation"

    def ready(self):
        from readerstudy.jobs.models import Job
        from readerstudy.jobs.queue import register

        # Resumable by seed: a retry makes only the samples still missing.
        register(Job.Kind.GENERATE, "generation.generate.run_generation")
        register(Job.Kind.REALISM, "generation.realism.run_realism_job")
