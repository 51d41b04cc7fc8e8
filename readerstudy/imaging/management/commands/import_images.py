from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from readerstudy.imaging.importing import ImportOptions, Layout, discover_sources, import_sources
from readerstudy.imaging.models import Dataset, Modality, Origin
from readerstudy.jobs.progress import TerminalProgress


class Command(BaseCommand):
    help = (
        "Import real images (DICOM files, multi-frame files or series folders; NIfTI; PNG, JPEG, TIFF) "
        "into the pool. Each file or series is imported whole or not at all; failures are listed and "
        "the rest of the batch carries on."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="A file or a folder (searched recursively).")
        parser.add_argument("--modality", required=True, choices=Modality.values)
        parser.add_argument("--dataset", required=True, help="Data set name (created if new).")
        parser.add_argument("--licence", help="Licence of the data set (required when the data set is new).")
        parser.add_argument("--source", default="", help="Citation or origin of a new data set.")
        parser.add_argument("--body-part", default="", help="e.g. chest, head.")
        parser.add_argument("--layout", default=Layout.AUTO, choices=[c for c, _ in Layout.CHOICES],
                            help="auto: volumes stay volumes; volume: require volumes; slices: 2D items from slices.")
        parser.add_argument("--slices", type=int, help="With --layout slices: number of evenly spaced slices.")
        parser.add_argument("--uncalibrated-ct", action="store_true",
                            help="Accept CT that is not in Hounsfield units (PNG, TIFF, secondary capture): scaled "
                                 "like MR, and recorded in the item's provenance.")
        parser.add_argument("--no-progress", action="store_true", help="Do not draw the progress bar.")

    def handle(self, *args, **opts):
        path = Path(opts["path"])
        if not path.exists():
            raise CommandError(f"{path} does not exist")
        dataset = self._dataset(opts)
        try:
            options = ImportOptions(
                modality=opts["modality"], dataset=dataset, body_part=opts["body_part"],
                layout=opts["layout"], slices=opts["slices"], uncalibrated_ct=opts["uncalibrated_ct"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        sources = discover_sources(path)
        if not sources:
            raise CommandError(f"no files found under {path}")
        progress = TerminalProgress(enabled=not opts["no_progress"], unit="file")
        try:
            report = import_sources(sources, options, progress)
        finally:
            progress.close()
        for outcome in report.outcomes:
            if outcome.status == "failed":
                self.stderr.write(f"FAILED {outcome.source}: {outcome.message}")
            elif opts["verbosity"] > 1:
                self.stdout.write(f"{outcome.status} {outcome.source}: {outcome.message}")
        self.stdout.write(report.summary())
        failed = report.count("failed")
        if failed:
            raise CommandError(f"{failed} of {len(report.outcomes)} sources failed (listed above)")

    def _dataset(self, opts) -> Dataset:
        dataset = Dataset.objects.filter(name=opts["dataset"]).first()
        if dataset is None:
            if not opts["licence"]:
                raise CommandError(f"data set {opts['dataset']!r} is new: give its licence with --licence")
            return Dataset.objects.create(
                name=opts["dataset"], origin=Origin.REAL, licence=opts["licence"], source=opts["source"]
            )
        if opts["licence"] and opts["licence"] != dataset.licence:
            raise CommandError(
                f"data set {dataset.name!r} already has licence {dataset.licence!r}; "
                f"refusing to import under {opts['licence']!r}"
            )
        return dataset
