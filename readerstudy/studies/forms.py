from django import forms
from django.contrib.auth import get_user_model

from generation.models import Generator
from readerstudy.accounts.permissions import readers as reader_accounts

from . import scales
from .config import (
    FORCED_CHOICE, SINGLE, STRATA, StudyConfigError, default_config, stratum_key, validate_config,
)
from .sampling import check_matrix

STRATUM_LABELS = {
    "XR/2d": "X-ray images", "CT/2d": "CT slices", "CT/3d": "CT volumes",
    "MR/2d": "MRI slices", "MR/3d": "MRI volumes",
}


def _field_name(key: str) -> str:
    return "cases_" + key.replace("/", "_").lower()


def _anchor_field(criterion: str) -> str:
    return "anchors_" + criterion


class StudyForm(forms.Form):
    """Everything a coordinator sets for a study; `config` holds the validated result."""

    name = forms.CharField(max_length=200)
    instructions = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False,
                                   help_text="Shown to readers on their worklist and beside every case.")
    design = forms.ChoiceField(
        choices=[("single", "One case at a time: real, synthetic or unsure"),
                 ("2", "Two images side by side, one real: which is real? (2AFC)"),
                 ("3", "Three images, one real (3AFC)"),
                 ("4", "Four images, one real among three synthetic (4AFC quartets)")],
        initial="single", label="Design", required=False,
        help_text="Forced choice: the cases per stratum below count trials; each trial shows one real and "
                  "the others synthetic images of that stratum, placed at random (each position equally often "
                  "for every reader). It asks only which image is real and, if ticked, how sure: set rating "
                  "scales to none and repeats to 0.",
    )
    synthetic_percent = forms.IntegerField(min_value=0, max_value=100, initial=50,
                                           label="Synthetic share (%)", help_text="In every stratum.")
    generators = forms.ModelMultipleChoiceField(
        Generator.objects.all(), required=False, widget=forms.CheckboxSelectMultiple,
        help_text="Synthetic cases come only from these generators (none ticked: any).",
    )
    confidence = forms.BooleanField(required=False, initial=True,
                                    label="Ask for confidence (1-5; needed for ROC analysis)")
    template = forms.ChoiceField(
        choices=[(k, v["title"]) for k, v in scales.TEMPLATES.items()] + [("none", "No rating scales")],
        initial="khader", label="Rating scales",
    )
    criteria = forms.MultipleChoiceField(
        choices=list(scales.CRITERIA.items()), widget=forms.CheckboxSelectMultiple, required=False,
        initial=list(scales.CRITERIA), help_text="Slice consistency is asked for volumes only.",
    )
    marks = forms.BooleanField(required=False, label="Ask where a case looks synthetic (optional spots on the image "
                                                     "and a comment)")
    allow_back = forms.BooleanField(required=False, initial=True, label="Readers may go back and change answers")
    calibration_cases = forms.IntegerField(min_value=0, max_value=100, initial=0,
                                           help_text="Shown first with feedback; excluded from results. Even number.")
    repeat_cases = forms.IntegerField(min_value=0, initial=0,
                                      help_text="Regular cases shown twice (intra-reader agreement). Even number.")
    sessions = forms.IntegerField(min_value=1, max_value=20, initial=1)
    washout_hours = forms.IntegerField(min_value=0, initial=0, label="Washout between sessions (hours)")
    blank_ms = forms.IntegerField(min_value=0, max_value=10000, initial=0, label="Blank screen between cases (ms)")
    max_per_group = forms.IntegerField(
        min_value=1, max_value=1000, initial=1, label="Cases per source group",
        help_text="At most this many cases of one patient, source file, volume or generated seed (1: independent cases).",
    )
    truth_count = forms.ChoiceField(
        choices=[("exact", "Exactly the synthetic share in every stratum"),
                 ("binomial", "Each case synthetic with that probability (the count itself is random)")],
        initial="exact", label="Real/synthetic count",
        help_text="Reading orders are random over the whole list either way; with a random count even a reader "
                  "who counts the cases learns nothing.",
    )
    allow_near_copies = forms.BooleanField(required=False, label="Allow synthetic near-copies of real images")
    near_copy_reason = forms.CharField(required=False, max_length=500, label="Reason (recorded with the study)")
    allow_training_data = forms.BooleanField(
        required=False, label="Allow a generator's training data as real cases where no other real case is left")
    training_data_reason = forms.CharField(required=False, max_length=500, label="Reason (recorded with the study)")
    matrix_size = forms.IntegerField(min_value=16, max_value=2048, required=False,
                                     help_text="Pixels per side; empty: the smallest item in each stratum.")
    matrix_depth = forms.IntegerField(min_value=2, max_value=1024, required=False,
                                      help_text="Slices per volume; empty: the smallest volume in the stratum.")
    equivalence_margin = forms.FloatField(
        min_value=0.01, max_value=0.49, initial=0.10, required=False, label="Equivalence margin",
        help_text="“Readers cannot tell” means accuracy and AUC within 0.5 ± this margin (two one-sided tests).")
    seed = forms.IntegerField(min_value=0, max_value=2**53, required=False,
                              help_text="Empty: a random seed, stored with the study.")

    def __init__(self, *args, study=None, **kwargs):
        self.study = study
        if study is not None:
            kwargs.setdefault("initial", self.initial_for(study))
        super().__init__(*args, **kwargs)
        for key in (stratum_key(m, d) for m, d in STRATA):
            self.fields[_field_name(key)] = forms.IntegerField(
                min_value=0, initial=0, label=STRATUM_LABELS[key], required=False
            )
        for criterion, title in scales.CRITERIA.items():
            self.fields[_anchor_field(criterion)] = forms.CharField(
                widget=forms.Textarea(attrs={
                    "rows": 5, "placeholder": "\n".join(scales.TEMPLATES["khader"]["anchors"][criterion]),
                }),
                required=False, label=f"Anchors: {title}",
                help_text="One per line, lowest first. Empty: the template's wording (Khader shown).",
            )
        if study is not None:
            del self.fields["seed"]

    @staticmethod
    def initial_for(study) -> dict:
        c = validate_config(study.config)
        initial = {
            "name": study.name, "instructions": study.instructions,
            "synthetic_percent": round(c["synthetic_fraction"] * 100), "generators": c["generators"],
            "confidence": c["questions"]["confidence"], "template": c["questions"]["template"],
            "criteria": c["questions"]["criteria"], "marks": c["questions"]["marks"], "matrix_size": c["matrix"]["size"],
            "equivalence_margin": c["analysis"]["equivalence_margin"],
            "design": str(c["design"]["alternatives"]) if c["design"]["kind"] == FORCED_CHOICE else SINGLE,
            "matrix_depth": c["matrix"]["depth"], **c["reading"], **c["sampling"],
        }
        for s in c["strata"]:
            initial[_field_name(stratum_key(s["modality"], s["dimensionality"]))] = s["cases"]
        for criterion, options in c["questions"]["scales"].items():
            initial[_anchor_field(criterion)] = "\n".join(o["text"] for o in options)
        return initial

    def stratum_fields(self):
        return [self[_field_name(stratum_key(m, d))] for m, d in STRATA]

    def anchor_fields(self):
        return [self[_anchor_field(c)] for c in scales.CRITERIA]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        template = data["template"]
        custom = {}
        for criterion in scales.CRITERIA:
            text = data.get(_anchor_field(criterion), "").strip()
            # Switching template resets anchors the coordinator did not touch.
            if text and not (template != self.initial.get("template") and text == self.initial.get(
                    _anchor_field(criterion), "").strip()):
                custom[criterion] = [line.strip() for line in text.splitlines() if line.strip()]
        config = default_config()
        config.update(
            design={"kind": SINGLE} if data.get("design", SINGLE) in ("", SINGLE) else
            {"kind": FORCED_CHOICE, "alternatives": int(data["design"])},
            strata=[
                {"modality": m, "dimensionality": d, "cases": data.get(_field_name(stratum_key(m, d))) or 0}
                for m, d in STRATA
            ],
            synthetic_fraction=data["synthetic_percent"] / 100,
            generators=sorted(g.pk for g in data["generators"]),
            questions={"confidence": data["confidence"], "template": template,
                       "criteria": data["criteria"], "scales": custom, "marks": data.get("marks", False)},
            reading={k: data[k] for k in ("allow_back", "calibration_cases", "repeat_cases", "sessions",
                                          "washout_hours", "blank_ms")},
            sampling={k: data.get(k) for k in ("max_per_group", "truth_count", "allow_near_copies",
                                               "near_copy_reason", "allow_training_data", "training_data_reason")},
            matrix={"size": data.get("matrix_size"), "depth": data.get("matrix_depth")},
            analysis={"equivalence_margin": data.get("equivalence_margin") or 0.10},
        )
        try:
            self.config = validate_config(config)
            if self.config["strata"]:
                check_matrix(self.config)
        except StudyConfigError as exc:
            raise forms.ValidationError(str(exc)) from None
        if not self.config["strata"]:
            raise forms.ValidationError("give at least one stratum a number of cases")
        return data


class ReadersForm(forms.Form):
    readers = forms.ModelMultipleChoiceField(
        get_user_model().objects.none(), widget=forms.CheckboxSelectMultiple, required=False
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["readers"].queryset = (
            reader_accounts().order_by("username")
        )
