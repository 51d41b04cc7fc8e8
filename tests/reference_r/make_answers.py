"""Write visual_turing_answers.csv: a simulated visual Turing test (run once; the R reference reads it).

8 readers x 80 cases (40 synthetic, 40 real); each answer is correct with probability
logistic(0.4 + reader effect + case effect), reader SD 0.5 and case SD 1.0, so readers
and cases both vary as they do in published studies.

    .venv/bin/python tests/reference_r/make_answers.py
"""

import csv
from pathlib import Path

import numpy as np

rng = np.random.default_rng(20261202)
readers, cases = 8, 80
reader_effect = rng.normal(0, 0.5, readers)
case_effect = rng.normal(0, 1.0, cases)
truth = ["synthetic" if c < cases // 2 else "real" for c in range(cases)]
with open(Path(__file__).with_name("visual_turing_answers.csv"), "w", newline="") as out:
    writer = csv.writer(out)
    writer.writerow(["reader", "case", "truth", "label", "correct"])
    for r in range(readers):
        for c in range(cases):
            correct = rng.random() < 1 / (1 + np.exp(-(0.4 + reader_effect[r] + case_effect[c])))
            said_synthetic = correct == (truth[c] == "synthetic")
            writer.writerow([f"r{r + 1}", f"c{c + 1:02d}", truth[c], "fake" if said_synthetic else "real", int(correct)])
