"""A study's configuration (stored in Study.config), with validation that names the problem.

Layout:
    strata              [{"modality", "dimensionality", "cases"}]  regular cases per stratum
    synthetic_fraction  share of synthetic cases in every stratum (0..1)
    generators          generator ids synthetic cases may come from ([] = any)
    questions           {"confidence": bool, "template": "khader"|"likert"|"none",
                         "criteria": [...], "scales": {criterion: [options]},
                         "marks": bool (readers may mark where a case looks synthetic, with a comment)}
    reading             {"allow_back", "calibration_cases", "repeat_cases", "sessions",
                         "washout_hours", "blank_ms"}
    design              {"kind": "single"|"forced_choice", "alternatives": 2-4}: forced choice shows
                        one real and alternatives-1 synthetic images of one stratum side by side
                        (strata count trials; calibration_cases counts calibration trials)
    sampling            {"max_per_group": cases per source group (1), "truth_count": "exact"|"binomial",
                         "allow_near_copies": bool, "near_copy_reason": str,
                         "allow_training_data": bool, "training_data_reason": str}
    matrix              {"size": int|None, "depth": int|None}  None = smallest in the stratum
    analysis            {"equivalence_margin": 0.10}: "readers cannot tell" = accuracy and AUC within
                        0.5 ± margin (TOST)
    presets             {"CT/3d": [rows, cols, depth]}  fixed when cases are drawn
    drawn               {"excluded": {reason: n}, "regular": {stratum: {"real": n, "synthetic": n}},
                         "orientation": {stratum: "radiological-axial" or None}}
                        what the draw left out and what it took (written by drawing)
"""

import copy

from readerstudy.imaging.models import Dimensionality, Modality

from . import scales


class StudyConfigError(ValueError):
    """A study configuration that cannot be used; the message says why."""


STRATA = [
    ("XR", Dimensionality.IMAGE),
    ("CT", Dimensionality.IMAGE),
    ("CT", Dimensionality.VOLUME),
    ("MR", Dimensionality.IMAGE),
    ("MR", Dimensionality.VOLUME),
]

DEFAULT_READING = {
    "allow_back": True,
    "calibration_cases": 0,
    "repeat_cases": 0,
    "sessions": 1,
    "washout_hours": 0,
    "blank_ms": 0,
}
# Read from older configurations and dropped: orders are no longer balanced in blocks (see sampling.py).
LEGACY_READING = {"block_size"}

DEFAULT_SAMPLING = {
    "max_per_group": 1,
    "truth_count": "exact",
    "allow_near_copies": False,
    "near_copy_reason": "",
    "allow_training_data": False,
    "training_data_reason": "",
}
TRUTH_COUNTS = ("exact", "binomial")

# Designs: one case at a time (real / synthetic / unsure), or forced choice: a trial shows
# `alternatives` images side by side, one real and the others synthetic, and asks which is real.
SINGLE, FORCED_CHOICE = "single", "forced_choice"
DEFAULT_DESIGN = {"kind": SINGLE, "alternatives": 2}


def stratum_key(modality: str, dimensionality: str) -> str:
    return f"{modality}/{dimensionality}"


def default_config() -> dict:
    return {
        "design": dict(DEFAULT_DESIGN),
        "strata": [],
        "synthetic_fraction": 0.5,
        "generators": [],
        "questions": {
            "confidence": True,
            "template": "khader",
            "criteria": list(scales.CRITERIA),
            "scales": scales.template_scales("khader"),
        },
        "reading": dict(DEFAULT_READING),
        "sampling": dict(DEFAULT_SAMPLING),
        "matrix": {"size": None, "depth": None},
        "analysis": {"equivalence_margin": 0.10},
        "presets": {},
        "drawn": {},
    }


def _int(value, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise StudyConfigError(f"{name} must be a whole number, got {value!r}")
    if not lo <= value <= hi:
        raise StudyConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def validate_config(raw: dict) -> dict:
    """A complete, checked copy of `raw` (missing sections take their defaults)."""
    if not isinstance(raw, dict):
        raise StudyConfigError("the study configuration must be a JSON object")
    config = default_config()
    unknown = set(raw) - set(config)
    if unknown:
        raise StudyConfigError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
    config.update(copy.deepcopy(raw))

    seen = set()
    for s in config["strata"]:
        if not isinstance(s, dict) or set(s) != {"modality", "dimensionality", "cases"}:
            raise StudyConfigError("each stratum needs exactly modality, dimensionality and cases")
        if (s["modality"], s["dimensionality"]) not in STRATA:
            raise StudyConfigError(f"no such stratum: {s['modality']} {s['dimensionality']}")
        key = stratum_key(s["modality"], s["dimensionality"])
        if key in seen:
            raise StudyConfigError(f"stratum {key} is listed twice")
        seen.add(key)
        _int(s["cases"], f"cases for {key}", 0, 100_000)
    config["strata"] = [s for s in config["strata"] if s["cases"] > 0]

    fraction = config["synthetic_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise StudyConfigError(f"synthetic_fraction must be a number from 0 to 1, got {fraction!r}")
    if not isinstance(config["generators"], list) or not all(
        isinstance(g, int) and not isinstance(g, bool) for g in config["generators"]
    ):
        raise StudyConfigError("generators must be a list of generator ids")

    config["questions"] = _validate_questions(config["questions"])
    config["reading"] = _validate_reading(config["reading"])
    config["sampling"] = _validate_sampling(config["sampling"])
    config["design"] = _validate_design(config["design"], config)

    if not isinstance(config["drawn"], dict) or not isinstance(config["presets"], dict):
        raise StudyConfigError("presets and drawn are written when cases are drawn and must be objects")
    analysis = config["analysis"]
    if not isinstance(analysis, dict) or set(analysis) - {"equivalence_margin"}:
        raise StudyConfigError("analysis options must be an object with equivalence_margin")
    config["analysis"] = analysis = {"equivalence_margin": 0.10, **analysis}
    margin = analysis["equivalence_margin"]
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 < margin < 0.5:
        raise StudyConfigError(f"the equivalence margin must be a number above 0 and below 0.5, got {margin!r}")
    matrix = config["matrix"]
    if not isinstance(matrix, dict) or set(matrix) != {"size", "depth"}:
        raise StudyConfigError("matrix must have exactly size and depth (null = smallest in the stratum)")
    if matrix["size"] is not None:
        _int(matrix["size"], "matrix size", 16, 2048)
    if matrix["depth"] is not None:
        _int(matrix["depth"], "volume depth", 2, 1024)
    return config


def _validate_questions(q: dict) -> dict:
    if not isinstance(q, dict):
        raise StudyConfigError("questions must be an object")
    unknown = set(q) - {"confidence", "template", "criteria", "scales", "marks"}
    if unknown:
        raise StudyConfigError(f"unknown question settings: {', '.join(sorted(unknown))}")
    template = q.get("template", "khader")
    if template not in (*scales.TEMPLATES, "none"):
        raise StudyConfigError(f"unknown rating template {template!r}; choose khader, likert or none")
    criteria = [] if template == "none" else q.get("criteria", list(scales.CRITERIA))
    if not isinstance(criteria, list) or set(criteria) - set(scales.CRITERIA):
        raise StudyConfigError(f"criteria must be a list drawn from {', '.join(scales.CRITERIA)}")
    defaults = scales.template_scales(template) if template != "none" else {}
    given = q.get("scales") or {}
    checked = {}
    for criterion in criteria:
        options = given.get(criterion) or defaults[criterion]
        texts = [o.get("text", "") if isinstance(o, dict) else o for o in options]
        texts = [str(t).strip() for t in texts]
        if any(not t for t in texts):
            raise StudyConfigError(f"every anchor of {scales.CRITERIA[criterion]} needs a text")
        try:
            checked[criterion] = scales.scale_options(scales.TEMPLATES[template]["codes"], texts)
        except ValueError as exc:
            raise StudyConfigError(f"{scales.CRITERIA[criterion]}: {exc}") from None
    if not isinstance(q.get("marks", False), bool):
        raise StudyConfigError("marks must be true or false")
    return {"confidence": bool(q.get("confidence", True)), "template": template,
            "criteria": [c for c in scales.CRITERIA if c in criteria], "scales": checked,
            "marks": q.get("marks", False)}


def _validate_reading(r: dict) -> dict:
    if not isinstance(r, dict):
        raise StudyConfigError("reading options must be an object")
    unknown = set(r) - set(DEFAULT_READING) - LEGACY_READING
    if unknown:
        raise StudyConfigError(f"unknown reading options: {', '.join(sorted(unknown))}")
    out = {**DEFAULT_READING, **{k: v for k, v in r.items() if k not in LEGACY_READING}}
    if not isinstance(out["allow_back"], bool):
        raise StudyConfigError("allow_back must be true or false")
    _int(out["calibration_cases"], "calibration cases", 0, 100)
    _int(out["repeat_cases"], "repeated cases", 0, 10_000)
    _int(out["sessions"], "sessions", 1, 20)
    _int(out["washout_hours"], "washout period (hours)", 0, 24 * 365)
    _int(out["blank_ms"], "blank screen between cases (ms)", 0, 10_000)
    if out["repeat_cases"] % 2:
        raise StudyConfigError("repeated cases must be an even number (half real, half synthetic)")
    return out


def _validate_design(design: dict, config: dict) -> dict:
    """The design, checked against the questions and reading options it allows."""
    if not isinstance(design, dict) or set(design) - set(DEFAULT_DESIGN):
        raise StudyConfigError("design must be an object with kind and alternatives")
    out = {**DEFAULT_DESIGN, **design}
    if out["kind"] not in (SINGLE, FORCED_CHOICE):
        raise StudyConfigError(f"design kind must be {SINGLE!r} or {FORCED_CHOICE!r}, got {out['kind']!r}")
    _int(out["alternatives"], "images per forced-choice trial", 2, 4)
    if out["kind"] == SINGLE:
        if config["reading"]["calibration_cases"] % 2:
            raise StudyConfigError("calibration cases must be an even number (half real, half synthetic)")
        return out
    problems = []
    if config["questions"]["criteria"]:
        problems.append("rating scales are asked of single cases: set the rating template to none")
    if config["questions"]["marks"]:
        problems.append("marks are asked of single cases: turn them off")
    if config["reading"]["repeat_cases"]:
        problems.append("repeated trials are not offered in forced-choice designs yet: set repeated cases to 0")
    if problems:
        raise StudyConfigError("a forced-choice study asks only which image is real (and how sure): "
                               + "; ".join(problems))
    return out


def is_forced_choice(config: dict) -> bool:
    return config["design"]["kind"] == FORCED_CHOICE


def _validate_sampling(sampling: dict) -> dict:
    if not isinstance(sampling, dict):
        raise StudyConfigError("sampling options must be an object")
    unknown = set(sampling) - set(DEFAULT_SAMPLING)
    if unknown:
        raise StudyConfigError(f"unknown sampling options: {', '.join(sorted(unknown))}")
    out = {**DEFAULT_SAMPLING, **sampling}
    _int(out["max_per_group"], "cases per source group", 1, 1000)
    if out["truth_count"] not in TRUTH_COUNTS:
        raise StudyConfigError("truth_count must be 'exact' (the set ratio in every stratum) or 'binomial' "
                               "(each case synthetic with that probability)")
    if not isinstance(out["allow_near_copies"], bool):
        raise StudyConfigError("allow_near_copies must be true or false")
    out["near_copy_reason"] = str(out["near_copy_reason"] or "").strip()
    if out["allow_near_copies"] and not out["near_copy_reason"]:
        raise StudyConfigError("give a reason for allowing synthetic near-copies of real images (it is recorded)")
    if not isinstance(out["allow_training_data"], bool):
        raise StudyConfigError("allow_training_data must be true or false")
    out["training_data_reason"] = str(out["training_data_reason"] or "").strip()
    if out["allow_training_data"] and not out["training_data_reason"]:
        raise StudyConfigError("give a reason for showing a generator's training data as real cases (it is recorded)")
    return out


def regular_case_count(config: dict) -> int:
    return sum(s["cases"] for s in config["strata"])


def criteria_for(config: dict, dimensionality: str) -> list[str]:
    """Rating criteria asked for a case of this dimensionality."""
    return [
        c for c in config["questions"]["criteria"]
        if dimensionality == Dimensionality.VOLUME or c not in scales.VOLUME_ONLY
    ]


MODALITY_LABELS = dict(Modality.choices)
