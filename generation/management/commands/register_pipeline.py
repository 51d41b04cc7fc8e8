from django.core.management.base import BaseCommand, CommandError

from generation.config import ConfigError
from generation.models import Generator
from generation.pipelines import describe_pipeline
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
            info = describe_pipeline(opts["path"])
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        generator, created = Generator.objects.update_or_create(
            name=opts["name"], version=opts["generator_version"],
            defaults={"kind": Generator.Kind.LOCAL_PIPELINE, "modalities": opts["modality"], "path": opts["path"],
                      "licence": opts["licence"], "model_card": opts["description"], "config": info},
        )
        prompt = "takes text prompts" if info["takes_prompt"] else "unconditional"
        self.stdout.write(f"{'Registered' if created else 'Updated'} {generator} ({info['pipeline_class']}, {prompt})")
