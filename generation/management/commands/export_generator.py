from django.core.management.base import BaseCommand, CommandError

from generation.config import ConfigError
from generation.registry import export_model_folder


class Command(BaseCommand):
    help = "Copy a trained model folder for shipping: no checkpoints, weights in float16 unless --full."

    def add_arguments(self, parser):
        parser.add_argument("source")
        parser.add_argument("destination")
        parser.add_argument("--full", action="store_true", help="Keep float32 weights.")

    def handle(self, *args, **opts):
        try:
            folder = export_model_folder(opts["source"], opts["destination"], half=not opts["full"])
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Exported to {folder}")
