from rest_framework import serializers

from generation.models import Generator
from readerstudy.accounts.permissions import readers as reader_accounts
from readerstudy.imaging.models import Dataset, Modality, PoolItem
from readerstudy.jobs.models import Job
from readerstudy.studies.config import StudyConfigError, validate_config
from readerstudy.studies.models import Assignment, Study


class DatasetSerializer(serializers.ModelSerializer):
    class Meta:
        model = Dataset
        fields = ["id", "name", "origin", "licence", "source", "created_at"]


class PoolItemSerializer(serializers.ModelSerializer):
    """Provenance included: coordinators and analysts only (never used for readers)."""

    dataset = serializers.CharField(source="dataset.name", read_only=True)
    generator = serializers.StringRelatedField()

    class Meta:
        model = PoolItem
        fields = ["id", "public_id", "modality", "dimensionality", "origin", "body_part", "dataset", "generator",
                  "seed", "prompt", "source_name", "source_sha256", "source_locator", "native_shape",
                  "master_shape", "quality", "created_at"]


class GeneratorSerializer(serializers.ModelSerializer):
    class Meta:
        model = Generator
        fields = ["id", "name", "version", "kind", "modalities", "licence", "model_card", "realism", "created_at"]


class GenerateRequestSerializer(serializers.Serializer):
    modality = serializers.ChoiceField(choices=Modality.choices)
    count = serializers.IntegerField(min_value=1, max_value=10000)
    seed = serializers.IntegerField(min_value=0, max_value=2**62, default=0)
    steps = serializers.IntegerField(min_value=1, max_value=1000, default=50)
    prompt = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class JobSerializer(serializers.ModelSerializer):
    percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = Job
        fields = ["id", "kind", "status", "title", "params", "result", "error", "progress_done", "progress_total",
                  "percent", "message", "cancel_requested", "attempts", "created_at", "started_at", "finished_at"]


class StudySerializer(serializers.ModelSerializer):
    """A study; `config` follows studies/config.py and is validated there."""

    seed = serializers.IntegerField(min_value=0, max_value=2**53, required=False)
    editors = serializers.SlugRelatedField(many=True, read_only=True, slug_field="username",
                                           help_text="Coordinators who may change it (POST .../editors to set).")

    class Meta:
        model = Study
        fields = ["slug", "name", "instructions", "status", "seed", "config", "audit", "created_at", "opened_at",
                  "closed_at", "editors"]
        read_only_fields = ["slug", "status", "audit", "created_at", "opened_at", "closed_at"]

    def validate_config(self, value):
        try:
            return validate_config(value)
        except StudyConfigError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs):
        if self.instance is not None and "seed" in attrs and attrs["seed"] != self.instance.seed:
            raise serializers.ValidationError({"seed": "the seed is fixed when the study is created"})
        return attrs


class AssignmentSerializer(serializers.ModelSerializer):
    reader = serializers.CharField(source="reader.username", read_only=True)

    class Meta:
        model = Assignment
        fields = ["reader", "order_seed", "created_at", "completed_at"]


class ReadersSerializer(serializers.Serializer):
    readers = serializers.ListField(child=serializers.CharField(max_length=150), allow_empty=False, max_length=1000)

    def validate_readers(self, names):
        users = list(reader_accounts().filter(username__in=names))
        missing = sorted(set(names) - {u.username for u in users})
        if missing:
            raise serializers.ValidationError(f"not active readers: {', '.join(missing)}")
        return users


class EditorsSerializer(serializers.Serializer):
    editors = serializers.ListField(child=serializers.CharField(max_length=150), allow_empty=False, max_length=100)


class ReopenSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=1000, help_text="Why; kept in the audit log (10 characters or more).")
    confirm = serializers.BooleanField(help_text="True: exports and analyses made since closing go out of date.")


class AnswerSerializer(serializers.Serializer):
    """Documents the answer body; validation is reading.answers.save_answer's (same rules as the viewer)."""

    idempotency_key = serializers.CharField(min_length=8, max_length=64)
    label = serializers.ChoiceField(choices=["real", "fake", "unsure", ""], required=False, allow_null=True)
    confidence = serializers.IntegerField(required=False, allow_null=True)
    realism = serializers.IntegerField(required=False, allow_null=True)
    anatomy = serializers.IntegerField(required=False, allow_null=True)
    slice_consistency = serializers.IntegerField(required=False, allow_null=True)
    submit = serializers.BooleanField(required=False, default=False)
    duration_ms = serializers.IntegerField(required=False, min_value=0)
    window_changes = serializers.IntegerField(required=False, min_value=0)
    slices_visited = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False)
    choice = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=3,
                                      help_text="Forced-choice trials: the panel (0 = A, the leftmost) taken for real.")
    marks = serializers.ListField(child=serializers.DictField(), required=False,
                                  help_text="Where the case looks synthetic: {x, y, slice} (boxes add w, h).")
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    base_revision = serializers.IntegerField(
        required=False, allow_null=True, min_value=0,
        help_text="The answer's revision this edit started from (optimistic concurrency): if another save changed "
                  "the answer meanwhile, the reply is 409 with the newer answer. Omitted: the last write wins.")


class ReaderAccountSerializer(serializers.Serializer):
    """A reader account as coordinators see it (never a password or a link after it was given)."""

    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(max_length=150)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    first_name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
    last_name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
    specialty = serializers.CharField(source="reader_profile.specialty", max_length=100, required=False,
                                      allow_blank=True, default="")
    years_experience = serializers.IntegerField(source="reader_profile.years_experience", min_value=0,
                                                max_value=80, required=False, allow_null=True, default=None)
    is_trainee = serializers.BooleanField(source="reader_profile.is_trainee", required=False, default=False)
    is_active = serializers.BooleanField(read_only=True)
    password_set = serializers.BooleanField(source="has_usable_password", read_only=True)
    last_login = serializers.DateTimeField(read_only=True)


class InvitationSerializer(serializers.Serializer):
    reader = ReaderAccountSerializer(source="user")
    link = serializers.CharField(help_text="One-time set-password link; shown only in this reply.")
    emailed = serializers.BooleanField()
