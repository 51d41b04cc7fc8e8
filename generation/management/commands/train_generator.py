from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from generation.config import ConfigError, TrainConfig, with_overrides
from generation.registry import next_version_folder, register_generator
from generation.training import train
from readerstudy.jobs.progress import TerminalProgress


class Command(BaseCommand):
    help = "Train a built-in diffusion model on real pool items and register it as a generator."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="Generator name; each run makes a new version folder.")
        parser.add_argument("--config", help="JSON file with TrainConfig fields.")
        parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                            help="Override config fields, e.g. steps=500 modalities=XR,CT")
        parser.add_argument("--output-root", default=None, help="Where model folders go (default: DATA_DIR/models).")
        parser.add_argument("--resume", metavar="FOLDER", help="Continue training the model in FOLDER.")
        parser.add_argument("--no-register", action="store_true", help="Do not add it to the generators.")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **opts):
        try:
            data = TrainConfig.from_file(opts["config"]).as_dict() if opts["config"] else TrainConfig().as_dict()
            config = TrainConfig.from_dict(with_overrides(data, opts["set"]))
            if opts["resume"]:
                folder = Path(opts["resume"])
            else:
                folder = next_version_folder(opts["name"], opts["output_root"])
            self.stdout.write(f"Training into {folder}")
            progress = TerminalProgress(enabled=not opts["no_progress"], unit="step", postfix_words=2)
            try:
                train(config, folder, progress, resume=bool(opts["resume"]), name=opts["name"])
            finally:
                progress.close()
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        from accelerate import PartialState

        if not PartialState().is_main_process:  # `accelerate launch`: the first process saved; it registers
            return
        if not opts["no_register"]:
            generator = register_generator(folder)
            self.stdout.write(f"Registered generator {generator} (id {generator.pk}) from {folder}")
        else:
            self.stdout.write(f"Saved model folder {folder}")

