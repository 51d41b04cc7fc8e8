"""Write renditions again with today's canonical writer, then re-run the leak audit of the studies that
serve them (their files changed; the audit is what allows a study to open)."""

from django.core.management.base import BaseCommand, CommandError

from readerstudy.imaging.models import Rendition
from readerstudy.imaging.pool import rerender
from readerstudy.studies.config import stratum_key
from readerstudy.studies.leak_audit import run_leak_audit
from readerstudy.studies.models import Study


def study_renditions(study: Study) -> list[Rendition]:
    """The renditions a study serves: each case's item at its stratum's matrix."""
    found = []
    for case in study.cases.select_related("item"):
        rows, cols, depth = study.config["presets"][stratum_key(case.item.modality, case.item.dimensionality)]
        found += list(Rendition.objects.filter(item=case.item, rows=rows, cols=cols, depth=depth))
    return list({r.pk: r for r in found}.values())


def studies_serving(renditions: list[Rendition]) -> list[Study]:
    """Studies with cases whose items these renditions belong to (at any matrix: re-audited to be sure)."""
    items = {r.item_id for r in renditions}
    return list(Study.objects.filter(cases__item_id__in=items).distinct().order_by("pk"))


class Command(BaseCommand):
    help = ("Write renditions again with the current canonical writer (after an upgrade changed its tags) and "
            "re-run the leak audit of every study that serves them. Pixels stay the same.")

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--study", help="the renditions one study serves (its slug)")
        target.add_argument("--all", action="store_true", help="every rendition in the pool")

    def handle(self, *args, **opts):
        if opts["study"]:
            study = Study.objects.filter(slug=opts["study"]).first()
            if study is None:
                raise CommandError(f"no study {opts['study']!r}")
            renditions = study_renditions(study)
        else:
            renditions = list(Rendition.objects.select_related("item").order_by("pk"))
        for rendition in renditions:
            rerender(rendition)
        self.stdout.write(f"{len(renditions)} rendition(s) written again.")
        failed = []
        for study in studies_serving(renditions):
            audit = run_leak_audit(study)
            self.stdout.write(f"  leak audit of {study.slug}: {'passed' if audit['ok'] else 'found differences'}")
            if not audit["ok"]:
                failed.append(study.slug)
        if failed:
            raise CommandError(f"the leak audit found differences in {', '.join(failed)}: see their study pages")
