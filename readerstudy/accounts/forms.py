from django import forms

from .models import ReaderProfile


class ReaderInviteForm(forms.Form):
    """A new reader account; the domain function (`readers.invite_reader`) decides whether it may be made."""

    username = forms.CharField(max_length=150, help_text="What the reader logs in with.")
    email = forms.EmailField(required=False, help_text="If given, the set-password link is e-mailed too.")
    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)
    specialty = forms.CharField(max_length=ReaderProfile._meta.get_field("specialty").max_length, required=False,
                                help_text=ReaderProfile._meta.get_field("specialty").help_text)
    years_experience = forms.IntegerField(min_value=0, max_value=80, required=False,
                                          label="Years of experience")
    is_trainee = forms.BooleanField(required=False, label="Trainee (resident or fellow)")
