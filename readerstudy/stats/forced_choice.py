"""Forced-choice trials (2AFC and n-AFC): how often readers pick the real image, against chance (1/n).

A trial shows one real and n-1 synthetic images; a hit is choosing the real one.
Readers who cannot tell real from synthetic hit at the chance rate 1/n.

- Per reader: hits / trials with an exact (Clopper-Pearson) interval and the exact
  binomial test against 1/n.
- Pooled over readers: the same, treating every answer as independent (shown for
  reference; answers of one reader, and to one trial, are correlated).
- Readers and trials random: the Obuchowski-Rockette model with Hillis (2007)
  degrees of freedom, for a single test, with the hit rate as the figure of merit and
  covariances from the trial jackknife (as `mrmc.or_analysis` does for AUCs):
  var = [MS(R) + r max(Cov2, 0)] / r, df = [MS(R) + r max(Cov2, 0)]^2 / (MS(R)^2 / (r - 1)).
  It uses the trials every included reader has answered.
"""

import numpy as np
from django.db.models import F

from readerstudy.imaging.models import Origin
from readerstudy.reading.models import Read
from readerstudy.studies.models import AssignedCase, StudyCase

from .mrmc import score_or_analysis
from .proportions import binomial_test, proportion
from .undefined import Undefined


def trial_answers(study) -> list[dict]:
    """One row per submitted forced-choice answer: reader, trial, role, panels, chosen and real panel, hit."""
    panels: dict = {}
    for row in (AssignedCase.objects.filter(assignment__study=study, assignment__preview=False)
                .values("assignment_id", "position", "panel", "session", "case_id", "case__trial", "case__role",
                        "case__item_id",
                        "case__item__origin", "case__item__modality", "case__item__dimensionality",
                        "case__item__generator__name", "case__item__generator__version")):
        panels.setdefault((row["assignment_id"], row["position"]), []).append(row)
    out = []
    reads = (Read.objects.filter(assigned_case__assignment__study=study, assigned_case__assignment__preview=False,
                                 submitted_at__isnull=False)
             .values("assigned_case__assignment_id", "assigned_case__position", "answers", "confidence",
                     "duration_ms", "window_changes", "started_at", "submitted_at", "revision", reader=F("assigned_case__assignment__reader__username")).order_by("assigned_case__assignment__reader__username",
                                                                  "assigned_case__position"))
    for read in reads:
        members = sorted(panels[(read["assigned_case__assignment_id"], read["assigned_case__position"])],
                         key=lambda r: r["panel"])
        real = [m["panel"] for m in members if m["case__item__origin"] == Origin.REAL]
        choice = (read["answers"] or {}).get("choice")
        first = members[0]
        generators = sorted({f"{m['case__item__generator__name']} v{m['case__item__generator__version']}"
                             for m in members if m["case__item__generator__name"]})
        out.append({
            "reader": read["reader"], "trial": first["case__trial"], "role": first["case__role"],
            "position": read["assigned_case__position"], "alternatives": len(members),
            "stratum": f"{first['case__item__modality']}/{first['case__item__dimensionality']}",
            "session": first["session"], "cases": [m["case_id"] for m in members],
            "truths": [m["case__item__origin"] for m in members],
            "items": [m["case__item_id"] for m in members], "generators": generators,
            "real_panel": real[0] if len(real) == 1 else None, "choice": choice,
            "hit": choice is not None and len(real) == 1 and choice == real[0],
            "confidence": read["confidence"], "duration_ms": read["duration_ms"],
            "window_changes": read["window_changes"], "started_at": read["started_at"],
            "submitted_at": read["submitted_at"], "revision": read["revision"],
        })
    return out


def hit_rate(hits: int, n: int, chance: float) -> dict:
    """Hits out of n with an exact interval and the exact binomial test against `chance`."""
    result = proportion(hits, n, method="clopper-pearson", p0=None)
    result["chance"] = chance
    result["p_value_vs_chance"] = binomial_test(hits, n, chance)
    result["p_value_above_chance"] = binomial_test(hits, n, chance, alternative="greater")
    return result


def analyse_forced_choice(study, config: dict) -> dict:
    """The forced-choice section of the analysis (regular trials; calibration trials are left out)."""
    alternatives = config["design"]["alternatives"]
    chance = 1 / alternatives
    every = trial_answers(study)
    answers = [a for a in every if a["role"] == StudyCase.Role.REGULAR]
    if not answers:
        return Undefined("no submitted answers to regular trials yet")
    by_reader: dict = {}
    for a in answers:
        by_reader.setdefault(a["reader"], {})[a["trial"]] = a["hit"]
    per_reader = {reader: hit_rate(sum(h.values()), len(h), chance) for reader, h in sorted(by_reader.items())}
    by_stratum = {}
    for stratum in sorted({a["stratum"] for a in answers}):
        rows = [a for a in answers if a["stratum"] == stratum]
        by_stratum[stratum] = hit_rate(sum(a["hit"] for a in rows), len(rows), chance)
    common = sorted(set.intersection(*(set(h) for h in by_reader.values())))
    matrix = np.array([[by_reader[r][t] for t in common] for r in sorted(by_reader)], dtype=float)
    positions = {"ABCD"[p]: sum(1 for a in answers if a["choice"] == p) for p in range(alternatives)}
    return {
        "alternatives": alternatives, "chance": chance,
        "counts": {"answers": len(answers), "readers": len(by_reader), "trials": len({a["trial"] for a in answers}),
                   "calibration_answers": len(every) - len(answers)},
        "pooled": {**hit_rate(sum(a["hit"] for a in answers), len(answers), chance),
                   "note": "answers treated as independent; see readers_and_trials_random"},
        "per_reader": per_reader,
        "by_stratum": by_stratum,
        "readers_and_trials_random": score_or_analysis(matrix, chance, unit="trials") if common else
        Undefined("no trial was answered by every reader"),
        # Where readers clicked, whatever the truth: a strong side preference is worth knowing.
        "choices_by_panel": positions,
        "method": "exact binomial per reader; Obuchowski-Rockette/Hillis single-test with the hit rate as "
                  "figure of merit, trial jackknife (readers and trials random)",
    }
