from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from generation.models import Generator
from generation.pool import synthetic_dataset
from readerstudy.imaging.importing import ImportOptions, Layout, discover_sources, import_sources
from readerstudy.imaging.models import Modality
from readerstudy.jobs.progress import TerminalProgress



class Command(BaseCommand):
    help = (
        "Import already-generated synthetic images (e.g. DALL-E 2 outputs or a published synthetic set) "
        "as synthetic pool items, recording their generator, prompt and licence."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--generator", required=True, help="Name of the model that made them, e.g. 'DALL-E 2'.")
        parser.add_argument("--generator-version", default="1")
        parser.add_argument("--modality", required=True, choices=Modality.values)
        parser.add_argument("--licence", required=True, help="Licence / terms of the synthetic set.")
        parser.add_argument("--prompt", default="", help="Prompt used to make them, if known.")
        parser.add_argument("--source", default="", help="Citation or URL of the set.")
        parser.add_argument("--body-part", default="")
        parser.add_argument("--layout", default=Layout.AUTO, choices=[c for c, _ in Layout.CHOICES])
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **opts):
        path = Path(opts["path"])
        if not path.exists():
            raise CommandError(f"{path} does not exist")
        generator, _ = Generator.objects.get_or_create(
            name=opts["generator"], version=opts["generator_version"],
            defaults={"kind": Generator.Kind.EXTERNAL, "modalities": [opts["modality"]], "licence": opts["licence"],
                      "model_card": opts["source"]},
        )
        if generator.kind != Generator.Kind.EXTERNAL:
            raise CommandError(f"{generator} is a {generator.get_kind_display()}, not an external set")
        dataset = synthetic_dataset(generator)
        options = ImportOptions(modality=opts["modality"], dataset=dataset, body_part=opts["body_part"],
                                layout=opts["layout"], generator=generator, prompt=opts["prompt"])
        progress = TerminalProgress(enabled=not opts["no_progress"], unit="file")
        report = import_sources(discover_sources(path), options, progress)
        progress.close()
        for outcome in report.outcomes:
            if outcome.status == "failed":
                self.stderr.write(f"FAILED {outcome.source}: {outcome.message}")
        self.stdout.write(report.summary())
        if report.count("failed"):
            raise CommandError(f"{report.count('failed')} of {len(report.outcomes)} sources failed (listed above)")
