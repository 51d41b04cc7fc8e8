import numpy as np
from django.core.management.base import BaseCommand, CommandError

from generation.config import ConfigError
from generation.control import add_control_items, control_generator
from readerstudy.imaging.models import Dimensionality, Modality, Origin, PoolItem


class Command(BaseCommand):
    help = ("Add real-as-synthetic control cases: held-out real items sent through the synthetic path "
            "(a null generator; add it to a study's generators to measure what the pipeline alone gives away).")

    def add_arguments(self, parser):
        parser.add_argument("--modality", required=True, choices=Modality.values)
        parser.add_argument("--dims", default="2d", choices=Dimensionality.values)
        parser.add_argument("--n", type=int, default=10, help="How many real items to hold out (default 10).")
        parser.add_argument("--seed", type=int, default=0, help="Seed for choosing the held-out items.")
        parser.add_argument("--resolution", type=int, default=64, help="Framing of the control (model matrix).")
        parser.add_argument("--depth", type=int, default=16, help="Slices of control volumes.")
        parser.add_argument("--item", type=int, action="append", help="Hold out these real items instead.")

    def handle(self, *args, **opts):
        generator = control_generator(opts["resolution"], opts["depth"])
        done = set(generator.items.values_list("seed", flat=True))
        candidates = PoolItem.objects.filter(origin=Origin.REAL, modality=opts["modality"],
                                             dimensionality=opts["dims"]).exclude(pk__in=done).order_by("pk")
        if opts["item"]:
            chosen = list(candidates.filter(pk__in=opts["item"]))
            missing = set(opts["item"]) - {i.pk for i in chosen}
            if missing:
                raise CommandError(f"not real {opts['modality']} {opts['dims']} items without a control yet: "
                                   f"{', '.join(map(str, sorted(missing)))}")
        else:
            pool = list(candidates)
            if len(pool) < opts["n"]:
                raise CommandError(f"needs {opts['n']} real {opts['modality']} {opts['dims']} items, "
                                   f"{len(pool)} are left")
            rng = np.random.default_rng(opts["seed"])
            chosen = [pool[i] for i in sorted(rng.choice(len(pool), size=opts["n"], replace=False))]
        try:
            made = add_control_items(chosen, generator)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{len(made)} control item(s) from real items {', '.join(str(i.pk) for i in chosen)} "
                          f"({generator}); their sources are now never drawn as real cases beside control cases")
