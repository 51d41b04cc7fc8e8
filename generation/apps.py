from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "generation"
    verbose_name = "Generation"

    def ready(self):
        from django.conf import settings

        from readerstudy.jobs.models import Job
        from readerstudy.jobs.queue import register

        # Resumable by seed: a retry makes only the samples still missing. Both run models (or, for
        # realism, read many images): on the model queue, which GPU machines' workers take.
        register(Job.Kind.GENERATE, "generation.generate.run_generation", queue=settings.MODEL_QUEUE)
        register(Job.Kind.REALISM, "generation.realism.run_realism_job", queue=settings.MODEL_QUEUE)
