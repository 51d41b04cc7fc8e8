import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from readerstudy.accounts.demo import ensure_demo_accounts
from readerstudy.imaging.importing import ImportOptions, import_path
from readerstudy.imaging.models import Dataset, Origin

DEMO_DIR = Path(settings.BASE_DIR) / "data" / "demo"


class Command(BaseCommand):
    help = "Build the demo pool from data/demo/manifest.json and create the demo accounts (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--manifest", default=str(DEMO_DIR / "manifest.json"))
        parser.add_argument("--no-accounts", action="store_true")

    def handle(self, *args, **opts):
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
        if not opts["no_accounts"]:
            self.stdout.write("\nDemo logins (local demonstration only):")
            for username, password, roles in ensure_demo_accounts():
                self.stdout.write(f"  {username:<12} {password:<18} {', '.join(roles)}")
