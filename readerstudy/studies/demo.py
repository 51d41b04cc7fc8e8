"""The demo study `make demo` opens for reader1 and reader2 (balanced, every stratum of the demo pool).

Its real cases come from sources the shipped demo models were not trained on
(data/demo/heldout), one case per source group. The one exception is recorded in
the study's configuration: the only CT volume that ships offline is the one the
volume model learned from, so the CT volume stratum shows it (allowed with a reason).
"""

from django.contrib.auth import get_user_model

from .lifecycle import create_study, open_study, prepare_study
from .models import Study
from .sampling import assign_readers

DEMO_SLUG = "demo-study"
DEMO_CONFIG = {
    "strata": [
        {"modality": "XR", "dimensionality": "2d", "cases": 2},
        {"modality": "CT", "dimensionality": "2d", "cases": 8},
        {"modality": "CT", "dimensionality": "3d", "cases": 2},
        {"modality": "MR", "dimensionality": "2d", "cases": 8},
        {"modality": "MR", "dimensionality": "3d", "cases": 4},
    ],
    "synthetic_fraction": 0.5,
    "reading": {"calibration_cases": 2, "repeat_cases": 2, "blank_ms": 300},
    "sampling": {
        "allow_training_data": True,
        "training_data_reason": "demo only: the one CT volume that ships offline is the demo volume model's "
                                "training volume; every other real case is held out from training",
    },
}
DEMO_INSTRUCTIONS = (
    "Decide for each image whether it is a real scan or was made by a generative model, "
    "then rate it on the anchored scales. The first two cases are calibration cases: you are "
    "told the answer afterwards. Images are shown at the generator's resolution."
)


def ensure_demo_study(readers=("reader1", "reader2")) -> tuple[Study, bool]:
    """Create, prepare and open the demo study unless it exists; returns (study, created)."""
    existing = Study.objects.filter(slug=DEMO_SLUG).first()
    if existing:
        return existing, False
    study = create_study(name="Demo study: real or synthetic?", config=DEMO_CONFIG,
                         instructions=DEMO_INSTRUCTIONS, seed=2026)
    Study.objects.filter(pk=study.pk).update(slug=DEMO_SLUG)
    study.refresh_from_db()
    prepare_study(study)
    assign_readers(study, get_user_model().objects.filter(username__in=readers).order_by("pk"))
    open_study(study)
    return study, True
