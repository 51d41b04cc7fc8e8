#!/usr/bin/env bash
# Re-train the committed demo models on the demo pool (about 30 minutes on 2 CPU cores); then
# data/models/measure_demo_realism.py (with a copy of the old models) measures them before and after.
# Run from the repository root after `make demo` (or `manage.py build_demo`) built the pool; each
# config names the data sets it trains on (data/demo, not heldout/, which the demo study shows).
set -euo pipefail
out=${1:-var/demo-model-runs}
for name in demo-2d demo-3d; do
  .venv/bin/python manage.py train_generator --name "$name" --config "data/models/$name.json" \
      --output-root "$out" --no-register
  rm -rf "data/models/$name"
  .venv/bin/python manage.py export_generator "$out/$name/v1" "data/models/$name"
done
