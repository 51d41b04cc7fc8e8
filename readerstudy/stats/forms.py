"""The sample-size planning form (the page and the API validate with it)."""

from django import forms


class SampleSizeForm(forms.Form):
    readers = forms.IntegerField(min_value=2, max_value=500, initial=5, help_text="Readers who read every case.")
    cases = forms.IntegerField(min_value=4, max_value=100_000, initial=100, help_text="Regular cases per reader.")
    accuracy = forms.FloatField(min_value=0.01, max_value=0.99, initial=0.5,
                                help_text="Expected mean accuracy (0.5: readers cannot tell real from synthetic).")
    margin = forms.FloatField(min_value=0.001, max_value=0.499, initial=0.10,
                              help_text="Equivalence margin around 0.5 (the study's analysis.equivalence_margin).")
    reader_sd = forms.FloatField(min_value=0, max_value=5, initial=0.5, label="Reader SD (logit)",
                                 help_text="How much readers differ; 0.5 is typical of published studies.")
    case_sd = forms.FloatField(min_value=0, max_value=5, initial=1.0, label="Case SD (logit)",
                               help_text="How much cases differ in difficulty.")
    simulations = forms.IntegerField(min_value=100, max_value=10_000, initial=500)
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=0)

    def planned(self) -> dict | None:
        """The plan for valid input, else None with the reasons on the form's fields."""
        from .planning import PlanningError, plan  # scipy: imported when a plan is asked for

        if not self.is_valid():
            return None
        try:
            return plan(**self.cleaned_data)
        except PlanningError as exc:
            self.add_error(exc.field, exc.message)
            return None

    @classmethod
    def with_defaults(cls, data) -> "SampleSizeForm":
        """A bound form whose missing fields take their initial values (prefilled links, partial API calls)."""
        values = {name: field.initial for name, field in cls.base_fields.items()}
        values.update({k: v for k, v in data.items() if k in values and v not in ("", None)})
        return cls(values)
