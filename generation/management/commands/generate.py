from django.core.management.base import BaseCommand, CommandError

from generation.config import DEFAULT_STEPS, ConfigError
from generation.generate import create_generation_job, run_generation
from generation.models import Generator
from readerstudy.jobs.models import Job
from readerstudy.jobs.progress import TerminalProgress, run_job


def find_generator(spec: str) -> Generator:
    """A generator by id, 'name' (latest version) or 'name:version'."""
    if spec.isdigit():
        generator = Generator.objects.filter(pk=int(spec)).first()
    else:
        name, _, version = spec.partition(":")
        qs = Generator.objects.filter(name=name)
        generator = qs.filter(version=version).first() if version else max(qs, key=_version_key, default=None)
    if generator is None:
        known = ", ".join(f"{g.name}:{g.version}" for g in Generator.objects.all()) or "none registered"
        raise CommandError(f"no generator {spec!r} (known: {known})")
    return generator


def _version_key(generator):
    return (0, int(generator.version)) if generator.version.isdigit() else (1, generator.version)


class Command(BaseCommand):
    help = "Sample synthetic images from a generator into the pool (runs here, or --background in the worker)."

    def add_arguments(self, parser):
        parser.add_argument("--model", required=True, help="Generator id, name, or name:version.")
        parser.add_argument("--modality", required=True)
        parser.add_argument("--n", type=int, required=True, help="Number of samples.")
        parser.add_argument("--seed", type=int, default=0, help="Sample i uses seed + i.")
        parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="DDIM (or pipeline) steps.")
        parser.add_argument("--prompt", default="", help="Text prompt, for pipelines that take one.")
        parser.add_argument("--background", action="store_true", help="Queue for the worker instead of running here.")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **opts):
        generator = find_generator(opts["model"])
        try:
            job = create_generation_job(generator, opts["modality"], opts["n"], opts["seed"], opts["steps"],
                                        opts["prompt"], enqueue=opts["background"])
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        if opts["background"]:
            self.stdout.write(f"Queued generation job #{job.pk}")
            return
        progress = TerminalProgress(enabled=not opts["no_progress"], unit="sample")
        job = run_job(job.pk, run_generation, echo=progress)
        progress.close()
        if job.status != Job.Status.SUCCEEDED:
            raise CommandError(f"job #{job.pk} {job.status}: {job.error or job.message}")
        self.stdout.write(f"Job #{job.pk}: {job.result['summary']}")
