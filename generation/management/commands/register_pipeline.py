from django.core.management.base import BaseCommand, CommandError

from generation.config import ConfigError
from generation.pipelines import register_pipeline_folder
from readerstudy.imaging.models import Modality


class Command(BaseCommand):
    help = "Register a local diffusers pipeline folder (e.g. a fine-tuned Stable Diffusion) as a generator."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--name", required=True)
        parser.add_argument("--generator-version", default="1")
        parser.add_argument("--modality", action="append", required=True, choices=Modality.values,
                            help="Modality it makes (repeat for several).")
        parser.add_argument("--licence", required=True, help="Licence of the weights and of their training data.")
        parser.add_argument("--description", default="")

    def handle(self, *args, **opts):
        try:
            generator, created = register_pipeline_folder(
                opts["path"], opts["name"], opts["modality"], opts["licence"], version=opts["generator_version"],
                model_card=opts["description"])
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        info = generator.config
        prompt = "takes text prompts" if info["takes_prompt"] else "unconditional"
        self.stdout.write(f"{'Registered' if created else 'Updated'} {generator} ({info['pipeline_class']}, {prompt})")
