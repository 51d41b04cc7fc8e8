import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from readerstudy.accounts.demo import DemoAccountsRefused, demo_accounts_refusal, ensure_demo_accounts
from readerstudy.imaging.importing import ImportOptions, import_path
from readerstudy.imaging.models import Dataset, Origin

DEMO_DIR = Path(settings.BASE_DIR) / "data" / "demo"
MODELS_DIR = Path(settings.BASE_DIR) / "data" / "models"
# Demo samples per modality: (2D model, volume model); DDIM steps kept low for a fast start.
DEMO_SAMPLES = {"XR": (6, 0), "CT": (6, 2), "MR": (6, 3)}
# First seed per modality: a (generator, seed) pair is one source group, so modalities must not share seeds.
DEMO_SEEDS = {"XR": 0, "CT": 1000, "MR": 2000}
DEMO_STEPS = 25


def sample_demo(generator, modality: str, n: int, seed: int, steps: int = DEMO_STEPS):
    """`n` samples of `modality` from a demo model through a generation job run here; the job, or
    CommandError when it failed (also used by data/models/measure_demo_realism.py)."""
    from generation.generate import create_generation_job, run_generation
    from readerstudy.jobs.models import Job
    from readerstudy.jobs.progress import run_job

    job = run_job(create_generation_job(generator, modality, n, seed=seed, steps=steps).pk, run_generation)
    if job.status != Job.Status.SUCCEEDED:
        raise CommandError(f"demo sampling failed: {job.error}")
    return job


class Command(BaseCommand):
    help = "Build the demo pool from data/demo/manifest.json and create the demo accounts (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--manifest", default=str(DEMO_DIR / "manifest.json"))
        parser.add_argument("--no-accounts", action="store_true")
        parser.add_argument("--no-synthetic", action="store_true", help="Skip sampling the shipped demo models.")
        parser.add_argument("--i-know-this-is-a-demo", action="store_true", dest="demo_confirmed",
                            help="Create the demo accounts (published passwords, a superuser) without DEBUG; "
                                 "refused unless ALLOWED_HOSTS are loopback only.")

    def handle(self, *args, **opts):
        if not opts["no_accounts"] and (reason := demo_accounts_refusal(opts["demo_confirmed"])):
            raise CommandError(f"refused: {reason} (or build the pool alone with --no-accounts)")
        manifest_path = Path(opts["manifest"])
        manifest = json.loads(manifest_path.read_text())
        datasets = {}
        for name, meta in manifest["datasets"].items():
            datasets[name], _ = Dataset.objects.get_or_create(
                name=name, defaults={"origin": Origin.REAL, "licence": meta["licence"], "source": meta["source"]}
            )
        failures = 0
        for entry in manifest["imports"]:
            options = ImportOptions(
                modality=entry["modality"], dataset=datasets[entry["dataset"]], body_part=entry.get("body_part", ""),
                layout=entry.get("layout", "auto"), slices=entry.get("slices"),
            )
            report = import_path(manifest_path.parent / entry["path"], options)
            failures += report.count("failed")
            for o in report.outcomes:
                if o.status == "failed":
                    self.stderr.write(f"FAILED {entry['path']}: {o.message}")
            self.stdout.write(f"{entry['path']} ({entry.get('layout', 'auto')}): {report.summary()}")
        if failures:
            raise CommandError(f"{failures} demo sources failed to import")
        if not opts["no_synthetic"]:
            self._synthetic()
        if not opts["no_accounts"]:
            try:
                accounts = ensure_demo_accounts(confirmed=opts["demo_confirmed"])
            except DemoAccountsRefused as exc:
                raise CommandError(f"refused: {exc}") from None
            if not opts["no_synthetic"]:
                from readerstudy.studies.demo import ensure_demo_study

                study, created = ensure_demo_study()
                self.stdout.write(
                    f"Demo study “{study.name}” {'created and opened' if created else 'already exists'}: "
                    f"{study.cases.count()} cases for reader1 and reader2"
                )
            self.stdout.write("\nDemo logins (local demonstration only):")
            for username, password, roles in accounts:
                self.stdout.write(f"  {username:<12} {password:<18} {', '.join(roles)}")

    def _synthetic(self):
        """Register the shipped demo models, sample every modality, and add DRRs of the CT volumes."""
        from generation.drr import make_drr
        from generation.registry import register_generator
        from readerstudy.imaging.models import Dimensionality, PoolItem

        for folder in sorted(p for p in MODELS_DIR.iterdir() if (p / "generator.json").exists()):
            generator = register_generator(folder)
            column = 0 if generator.kind == generator.Kind.BUILTIN_2D else 1
            for modality in generator.modalities:
                n = DEMO_SAMPLES[modality][column]
                if n == 0 or generator.items.filter(modality=modality).exists():
                    continue
                job = sample_demo(generator, modality, n, DEMO_SEEDS[modality])
                self.stdout.write(f"{generator}: {job.result['summary']}")
        for ct in PoolItem.objects.filter(modality="CT", dimensionality=Dimensionality.VOLUME, origin=Origin.REAL):
            if not PoolItem.objects.filter(source_locator=f"drr of item {ct.pk}").exists():
                drr = make_drr(ct)
                self.stdout.write(f"DRR of CT volume {ct.pk}: synthetic X-ray item {drr.pk}")
        self._realism()

    def _realism(self):
        """Measure every demo generator's realism (shown on the Generators page) where not measured yet."""
        from generation.models import Generator
        from generation.realism import headline, realism_report

        for generator in Generator.objects.filter(realism={}).exclude(items=None).distinct():
            report = realism_report(generator)
            Generator.objects.filter(pk=generator.pk).update(realism=report)
            best = headline(report)
            if best:
                self.stdout.write(f"{generator}: detector AUC {best['auc']} (95% CI {best['ci95'][0]}-"
                                  f"{best['ci95'][1]}) on {best['stratum']}")
