from django.core.management.base import BaseCommand, CommandError

from generation.calibration import calibrate_model_folder
from generation.config import ConfigError
from generation.models import Generator
from generation.registry import register_generator


class Command(BaseCommand):
    help = ("Calibrate a built-in model's output intensities onto its training images (generation/calibration.py), "
            "for models trained before calibration or with calibration_samples=0; rewrites its generator.json.")

    def add_arguments(self, parser):
        parser.add_argument("name", help="Generator name (its newest version).")
        parser.add_argument("--samples", type=int, default=16, help="Samples per modality (default 16).")
        parser.add_argument("--steps", type=int, default=50, help="DDIM steps of those samples (default 50).")

    def handle(self, *args, **opts):
        generator = Generator.objects.filter(
            name=opts["name"], kind__in=[Generator.Kind.BUILTIN_2D, Generator.Kind.BUILTIN_3D]
        ).order_by("-created_at").first()
        if generator is None:
            raise CommandError(f"no built-in model named {opts['name']!r}")
        if not 1 <= opts["samples"] <= 4096 or not 1 <= opts["steps"] <= 1000:
            raise CommandError("--samples must be 1-4096 and --steps 1-1000")
        try:
            table = calibrate_model_folder(generator.path, samples=opts["samples"], steps=opts["steps"])
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        register_generator(generator.path, version=generator.version)  # the model card and config again
        done = ", ".join(f"{modality} from {entry['samples']} samples" for modality, entry in table.items())
        self.stdout.write(f"Calibrated {generator}: {done}")
