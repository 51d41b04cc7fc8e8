from django.core.management.base import BaseCommand, CommandError

from generation.models import Generator
from generation.realism import headline, model_card_section, realism_report


class Command(BaseCommand):
    help = ("Measure how well a simple detector tells a generator's samples from held-out real images "
            "(detector AUC with 95% CI), its memorisation rate and diversity; the result is kept on the generator.")

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--generator-version", help="Default: the newest version of that name.")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, **opts):
        generators = Generator.objects.filter(name=opts["name"])
        if opts["generator_version"]:
            generators = generators.filter(version=opts["generator_version"])
        generator = generators.order_by("-created_at").first()
        if generator is None:
            raise CommandError(f"no generator named {opts['name']!r}"
                               + (f" with version {opts['generator_version']!r}" if opts["generator_version"] else ""))
        report = realism_report(generator, seed=opts["seed"])
        Generator.objects.filter(pk=generator.pk).update(realism=report)
        self.stdout.write(model_card_section(report) or report.get("undefined", "nothing to measure"))
        best = headline(report)
        if best:
            self.stdout.write(f"{generator}: detector AUC {best['auc']} (95% CI {best['ci95'][0]}-{best['ci95'][1]}) "
                              f"on {best['stratum']}")
