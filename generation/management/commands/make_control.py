from django.core.management.base import BaseCommand, CommandError

from generation.config import ConfigError
from generation.control import control_generator
from generation.generate import create_generation_job, run_generation
from readerstudy.imaging.models import Dimensionality, Modality
from readerstudy.jobs.models import Job
from readerstudy.jobs.progress import run_job


class Command(BaseCommand):
    help = ("Add real-as-synthetic control cases: held-out real items sent through the synthetic path "
            "(a null generator; add it to a study's generators to measure what the pipeline alone gives away). "
            "The same as a generation job of the control generator.")

    def add_arguments(self, parser):
        parser.add_argument("--modality", required=True, choices=Modality.values)
        parser.add_argument("--dims", default="2d", choices=Dimensionality.values)
        parser.add_argument("--n", type=int, default=10, help="How many real items to hold out (default 10).")
        parser.add_argument("--seed", type=int, default=0, help="Seed for choosing the held-out items.")

    def handle(self, *args, **opts):
        generator = control_generator(opts["dims"])
        try:
            job = create_generation_job(generator, opts["modality"], opts["n"], opts["seed"], 1)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        job = run_job(job.pk, run_generation)
        if job.status != Job.Status.SUCCEEDED:
            raise CommandError(job.error or job.message)
        self.stdout.write(f"{job.result['summary']}; held out real items {job.result['held_out']} "
                          "(never drawn as real cases beside control cases)")
