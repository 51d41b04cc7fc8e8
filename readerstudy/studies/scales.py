"""Rating-scale templates a study can start from; coordinators may edit the anchor texts.

`khader` follows the four anchored categories (A-D) per criterion that Khader et
al. 2023 ("Medical Diffusion", Sci Rep 13:7303) used; the wording is ours.
`likert` is a plain 1-5 scale. Values are stored as integers (A=1 ... D=4).
"""

CRITERIA = {
    "realism": "Realistic appearance",
    "anatomy": "Anatomical correctness",
    "slice_consistency": "Slice consistency",
}
# Criteria that only make sense for volumes.
VOLUME_ONLY = frozenset({"slice_consistency"})

TEMPLATES = {
    "khader": {
        "title": "Khader et al. 2023: four anchored categories A-D",
        "codes": ["A", "B", "C", "D"],
        "anchors": {
            "realism": [
                "Not recognisable as a CT/MRI/X-ray image",
                "Unrealistic, but recognisable as the modality",
                "Realistic, with minor unrealistic areas",
                "Cannot tell whether it is fake or not",
            ],
            "anatomy": [
                "Anatomy not recognisable",
                "Major anatomical errors",
                "Minor anatomical errors",
                "Anatomically correct",
            ],
            "slice_consistency": [
                "No consistent neighbouring slices",
                "Up to 3 consecutive slices consistent",
                "More than 10 consecutive slices consistent",
                "All slices consistent",
            ],
        },
    },
    "likert": {
        "title": "Plain 1-5 Likert scale",
        "codes": ["1", "2", "3", "4", "5"],
        "anchors": {
            criterion: ["Very poor", "Poor", "Acceptable", "Good", "Excellent"] for criterion in CRITERIA
        },
    },
}

CONFIDENCE_ANCHORS = ["Guessing", "Slightly sure", "Fairly sure", "Very sure", "Certain"]
LABEL_OPTIONS = [
    {"value": "real", "text": "Real", "key": "r"},
    {"value": "fake", "text": "Synthetic", "key": "f"},
    {"value": "unsure", "text": "Unsure", "key": "u"},
]


def scale_options(codes: list[str], anchors: list[str]) -> list[dict]:
    """Options of one anchored scale: value (stored integer), code shown to the reader, anchor text."""
    if len(codes) != len(anchors):
        raise ValueError(f"this scale needs exactly {len(codes)} anchor texts, got {len(anchors)}")
    return [{"value": i + 1, "code": code, "text": text} for i, (code, text) in enumerate(zip(codes, anchors))]


def template_scales(template: str) -> dict:
    """The criteria -> options mapping of a template, with its default anchors."""
    spec = TEMPLATES[template]
    return {c: scale_options(spec["codes"], spec["anchors"][c]) for c in CRITERIA}
