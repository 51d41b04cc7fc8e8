from django import forms

from readerstudy.imaging.models import Modality

from .models import Generator
from .config import DEFAULT_STEPS


class GenerateForm(forms.Form):
    generator = forms.ModelChoiceField(
        queryset=Generator.objects.filter(kind__in=[Generator.Kind.BUILTIN_2D, Generator.Kind.BUILTIN_3D,
                                                    Generator.Kind.LOCAL_PIPELINE, Generator.Kind.CONTROL]),
        help_text="The real-as-synthetic control holds out that many real images and sends them through the "
                  "synthetic path (a null generator).",
    )
    modality = forms.ChoiceField(choices=Modality.choices)
    n = forms.IntegerField(label="Number of samples", min_value=1, max_value=10000, initial=8)
    seed = forms.IntegerField(min_value=0, initial=0, help_text="Sample i uses seed + i; the same seed gives the same pixels.")
    steps = forms.IntegerField(min_value=1, max_value=1000, initial=DEFAULT_STEPS, help_text="DDIM sampling steps.")
    prompt = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="Only for local pipelines that take a text prompt.")

    def clean(self):
        from .config import ConfigError
        from .generate import validate_request

        data = super().clean()
        if self.errors:
            return data
        try:
            validate_request(data["generator"], data["modality"], data["n"], data["seed"], data["steps"], data["prompt"])
        except ConfigError as exc:
            raise forms.ValidationError(str(exc)) from None
        return data
