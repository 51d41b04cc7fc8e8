from django import forms
from django.conf import settings

from .importing import Layout
from .models import Dataset, Modality, Origin


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput())
        # An empty file is one failed file among the others (the importer says so), not a refused upload.
        kwargs.setdefault("allow_empty_file", True)
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, (list, tuple)):
            return [single(d, initial) for d in data]
        return [single(data, initial)] if data else []


class UploadForm(forms.Form):
    files = MultipleFileField(
        required=False, help_text="DICOM (single, multi-frame or all files of a series), NIfTI, PNG, JPEG, TIFF."
    )
    folder = MultipleFileField(required=False, help_text="Or a whole folder, e.g. a DICOM series.")
    modality = forms.ChoiceField(choices=Modality.choices)
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.filter(origin=Origin.REAL), required=False, empty_label="(new data set)"
    )
    new_dataset = forms.CharField(required=False, max_length=200, label="New data set name")
    licence = forms.CharField(required=False, max_length=300, help_text="Required for a new data set.")
    source = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), label="Citation / origin")
    body_part = forms.CharField(required=False, max_length=50)
    layout = forms.ChoiceField(choices=Layout.CHOICES, initial=Layout.AUTO)
    slices = forms.IntegerField(required=False, min_value=1, help_text="With 'separate 2D slices': how many.")
    uncalibrated_ct = forms.BooleanField(
        required=False, label="CT not in Hounsfield units",
        help_text="Accept CT without HU (PNG, TIFF, secondary capture): scaled like MR and recorded as such.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["folder"].widget.attrs.update({"webkitdirectory": True, "directory": True})

    def clean(self):
        data = super().clean()
        uploads = (data.get("files") or []) + (data.get("folder") or [])
        if not uploads:
            raise forms.ValidationError("Choose at least one file or a folder.")
        if len(uploads) > settings.UPLOAD_MAX_FILES:
            raise forms.ValidationError(f"At most {settings.UPLOAD_MAX_FILES} files per upload.")
        total = sum(f.size for f in uploads)
        if total > settings.UPLOAD_MAX_BYTES:
            raise forms.ValidationError(
                f"The upload is {total / 1024**2:,.0f} MiB; the limit is {settings.UPLOAD_MAX_BYTES / 1024**2:,.0f} MiB."
            )
        data["uploads"] = uploads
        if not data.get("dataset"):
            name = (data.get("new_dataset") or "").strip()
            if not name:
                self.add_error("new_dataset", "Choose a data set or name a new one.")
            elif Dataset.objects.filter(name=name).exists():
                self.add_error("new_dataset", "A data set with this name exists; choose it above.")
            if not (data.get("licence") or "").strip():
                self.add_error("licence", "A new data set needs its licence.")
        return data
