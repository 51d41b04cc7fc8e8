from django.core.management.base import BaseCommand, CommandError

from generation.config import ConfigError
from generation.drr import make_drr
from readerstudy.imaging.models import Dimensionality, Modality, Origin, PoolItem


class Command(BaseCommand):
    help = "Make physics-simulated radiographs (DRRs) from real CT volumes in the pool (synthetic X-ray items)."

    def add_arguments(self, parser):
        parser.add_argument("--item", type=int, action="append", help="CT volume item id (default: every real one).")

    def handle(self, *args, **opts):
        items = PoolItem.objects.filter(modality=Modality.CT, dimensionality=Dimensionality.VOLUME, origin=Origin.REAL)
        if opts["item"]:
            items = items.filter(pk__in=opts["item"])
            missing = set(opts["item"]) - set(items.values_list("pk", flat=True))
            if missing:
                raise CommandError(f"not real CT volumes: {', '.join(map(str, sorted(missing)))}")
        made = 0
        for item in items:
            if PoolItem.objects.filter(source_locator=f"drr of item {item.pk}").exists():
                continue
            try:
                drr = make_drr(item)
            except ConfigError as exc:
                raise CommandError(str(exc)) from None
            made += 1
            self.stdout.write(f"DRR of CT item {item.pk} -> X-ray item {drr.pk}")
        self.stdout.write(f"{made} DRR(s) made")
