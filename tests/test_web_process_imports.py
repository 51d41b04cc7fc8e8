"""The web process does not carry the generation runtime (issue 15, point 4a): torch, diffusers, MONAI,
peft and accelerate are imported only where models run (generation tasks, training and sampling), and
scipy, pandas, matplotlib and statsmodels only by the views and jobs that compute with them."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "diffusers", "monai", "peft", "accelerate",
         # the statistics stack: loaded by the analysis, charts, audits and plans that use it
         "scipy", "pandas", "matplotlib", "statsmodels", "sklearn")

PROBE = """
import json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
import django
django.setup()
from django.urls import get_resolver
get_resolver().url_patterns  # every view, form, serializer and API module behind the URL conf
import readerstudy.wsgi  # noqa: F401
from django.core.management import load_command_class
for name in ("import_images", "gc_pool", "rerender", "recover_jobs"):
    load_command_class({"import_images": "readerstudy.imaging", "gc_pool": "readerstudy.imaging",
                        "rerender": "readerstudy.studies", "recover_jobs": "readerstudy.jobs"}[name], name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in %r)))
""" % (HEAVY,)


def test_pages_api_and_commands_import_no_model_runtime():
    run = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    heavy = json.loads(run.stdout.strip().splitlines()[-1])
    assert heavy == [], f"imported by the web process: {heavy[:10]}"
