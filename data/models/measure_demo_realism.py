"""The realism numbers of the demo models, measured as the README's table is: run by hand.

    .venv/bin/python data/models/measure_demo_realism.py [MODELS_FOLDER ...]

For each folder of exported models (default: data/models; give an older copy beside it to compare
before and after), a fresh data folder gets the demo pool (`build_demo --no-accounts --no-synthetic`),
the folder's models are registered, and each samples what `make demo` samples plus 40 more per 2D
modality and 12 more volumes (seed 5000, 25 DDIM steps); then `generation.realism.realism_report`
(what `manage.py measure_realism` runs) measures every stratum. Prints one Markdown table. About
2-3 minutes per folder on 2 CPUs.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
MORE = {"2d": 40, "3d": 12}
MORE_SEED = 5000


def measure(models: Path) -> dict:
    """In this process (a child with its own data folder): pool, samples, realism of every model in `models`."""
    import django

    django.setup()
    from django.core.management import call_command

    from generation.realism import realism_report
    from generation.registry import register_generator
    from readerstudy.demo.management.commands.build_demo import DEMO_SAMPLES, DEMO_SEEDS, sample_demo

    call_command("migrate", verbosity=0)
    call_command("build_demo", no_accounts=True, no_synthetic=True, stdout=open(os.devnull, "w"))
    reports = {}
    for folder in sorted(p for p in models.iterdir() if (p / "generator.json").exists()):
        generator = register_generator(folder)
        column = 0 if generator.kind == generator.Kind.BUILTIN_2D else 1
        for modality in generator.modalities:
            first = DEMO_SAMPLES[modality][column]
            if first == 0:
                continue
            for count, seed in ((first, DEMO_SEEDS[modality]), (MORE["2d" if column == 0 else "3d"], MORE_SEED)):
                sample_demo(generator, modality, count, seed)
        reports[generator.name] = realism_report(generator)
    return reports


def table(results: dict) -> list[str]:
    lines = ["| models | model | stratum | samples / real images | detector AUC (95% CI) | near-copy rate | "
             "diversity | main features |", "|---|---|---|---|---|---|---|---|"]
    for folder, reports in results.items():
        for name, report in reports.items():
            for stratum, s in report["strata"].items():
                d = s.get("detector", {})
                real = f"{s['n_real']} {'held out' if s.get('real_held_out') else 'not held out'}"
                auc = (f"{d['auc']} ({d['ci95'][0]}–{d['ci95'][1]})" if "auc" in d
                       else d.get("undefined", "not measured"))
                lines.append(f"| {folder} | {name} | {stratum} | {s['n_synthetic']} / {real} | {auc} | "
                             f"{(s.get('memorisation') or {}).get('near_copy_rate', '')} | {s.get('diversity', '')} | "
                             f"{', '.join(f['label'] for f in d.get('drivers', []))} |")
    return lines


def main():
    if os.environ.get("DEMO_REALISM_MODELS"):  # the child
        print(json.dumps(measure(Path(os.environ["DEMO_REALISM_MODELS"])), default=str))
        return
    folders = [Path(p).resolve() for p in sys.argv[1:]] or [ROOT / "data" / "models"]
    results = {}
    for folder in folders:
        data = Path(tempfile.mkdtemp(prefix="demo-realism-"))
        try:
            env = {**os.environ, "DEMO_REALISM_MODELS": str(folder), "READERSTUDY_DATA_DIR": str(data),
                   "DJANGO_SETTINGS_MODULE": "readerstudy.settings", "PYTHONPATH": str(ROOT)}
            out = subprocess.run([sys.executable, __file__], env=env, cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout
            results[str(folder)] = json.loads(out.strip().splitlines()[-1])
        finally:
            shutil.rmtree(data, ignore_errors=True)
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
