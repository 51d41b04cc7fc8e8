"""REST API: thin views over the same domain functions the web pages use.

Coordinators write; coordinators and analysts read the pool, generators, jobs,
studies, progress, analysis and exports. Readers only reach their own cases,
through their opaque tokens, and get exactly what the viewer gets.
"""

from django.db import transaction
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from generation.config import ConfigError
from generation.generate import create_generation_job
from generation.models import Generator
from readerstudy.accounts import permissions as perms
from readerstudy.accounts import readers as reader_accounts
from readerstudy.accounts.roles import roles_of
from readerstudy.imaging.forms import UploadForm
from readerstudy.imaging.models import Dataset, Dimensionality, Modality, Origin, PoolItem
from readerstudy.imaging.tasks import create_upload_job
from readerstudy.jobs.models import Job
from readerstudy.jobs.queue import JobError, cancel_job, retry_job
from readerstudy.reading.answers import save_answer
from readerstudy.reading.blinded import case_payload
from readerstudy.reading.worklist import readable, reader_assignments, reader_case, reader_position
from readerstudy.stats import exports
from readerstudy.stats.forms import SampleSizeForm
from readerstudy.studies import lifecycle, sampling
from readerstudy.studies.models import Study
from readerstudy.studies.progress import study_progress

from . import serializers as s
from .permissions import HasPermission


class StaffViewSet(viewsets.GenericViewSet):
    """Coordinators' and analysts' endpoints: each view names the permissions it needs (HasPermission)."""

    permission_classes = [IsAuthenticated, HasPermission]
    read_permission = perms.VIEW_STUDIES
    write_permission = perms.MANAGE_STUDIES


class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, StaffViewSet):
    read_permission, write_permission = perms.VIEW_POOL, perms.IMPORT_IMAGES
    queryset = Dataset.objects.order_by("name")
    serializer_class = s.DatasetSerializer


FILTERS = {"modality": "modality", "origin": "origin", "dimensionality": "dimensionality", "dataset": "dataset_id",
           "generator": "generator_id"}
FILTER_CHOICES = {"modality": Modality.values, "origin": Origin.values, "dimensionality": Dimensionality.values}


@extend_schema(parameters=[OpenApiParameter(name, str) for name in FILTERS])
class PoolItemViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, StaffViewSet):
    read_permission, write_permission = perms.VIEW_POOL, perms.IMPORT_IMAGES
    """The image pool with provenance; filter by modality, origin, dimensionality, dataset, generator."""

    serializer_class = s.PoolItemSerializer

    def get_queryset(self):
        qs = PoolItem.objects.select_related("dataset", "generator").order_by("-created_at", "-id")
        for param, field in FILTERS.items():
            value = self.request.query_params.get(param)
            if value:
                # Checked before the query: PostgreSQL refuses some strings (NUL bytes) with an error.
                if field.endswith("_id") and not (value.isascii() and value.isdigit()):
                    raise ValidationError({param: "must be a numeric id"})
                if param in FILTER_CHOICES and value not in FILTER_CHOICES[param]:
                    raise ValidationError({param: f"must be one of {', '.join(FILTER_CHOICES[param])}"})
                qs = qs.filter(**{field: value})
        return qs


class UploadSerializerDoc(s.serializers.Serializer):
    files = s.serializers.ListField(child=s.serializers.FileField())
    modality = s.serializers.CharField()
    dataset = s.serializers.IntegerField(required=False, help_text="an existing real data set, or:")
    new_dataset = s.serializers.CharField(required=False)
    licence = s.serializers.CharField(required=False)
    source = s.serializers.CharField(required=False)
    body_part = s.serializers.CharField(required=False)
    layout = s.serializers.CharField(required=False)
    slices = s.serializers.IntegerField(required=False)


class PoolUploadView(APIView):
    """Upload image files (multipart) into a real data set; the import runs as a background job."""

    parser_classes = [MultiPartParser]
    permission_classes = [IsAuthenticated, HasPermission]
    read_permission = write_permission = perms.IMPORT_IMAGES

    @extend_schema(request={"multipart/form-data": UploadSerializerDoc}, responses={202: s.JobSerializer})
    def post(self, request):
        data = request.POST.copy()
        data.setdefault("layout", "auto")
        form = UploadForm(data, request.FILES)
        if not form.is_valid():
            return Response({"error": "invalid upload", "detail": form.errors.get_json_data()},
                            status=status.HTTP_400_BAD_REQUEST)
        job = create_upload_job(form.cleaned_data, request.user)
        return Response(s.JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class GeneratorViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, StaffViewSet):
    read_permission, write_permission = perms.VIEW_GENERATORS, perms.GENERATE_IMAGES
    queryset = Generator.objects.all()
    serializer_class = s.GeneratorSerializer

    @extend_schema(request=s.GenerateRequestSerializer, responses={202: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def generate(self, request, pk=None):
        """Queue a background job sampling `count` images from this generator."""
        generator = self.get_object()
        body = s.GenerateRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        d = body.validated_data
        try:
            job = create_generation_job(generator, d["modality"], d["count"], d["seed"], d["steps"], d["prompt"],
                                        user=request.user, enqueue=True)
        except ConfigError as exc:
            raise ValidationError({"error": str(exc)}) from None
        return Response(s.JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def realism(self, request, pk=None):
        """Queue the realism measurement of this generator (the result lands in its `realism` field)."""
        from generation.realism import create_realism_job

        job = create_realism_job(self.get_object(), user=request.user)
        return Response(s.JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, StaffViewSet):
    read_permission, write_permission = perms.VIEW_JOBS, perms.MANAGE_JOBS
    serializer_class = s.JobSerializer

    def get_queryset(self):
        qs = Job.objects.order_by("-created_at")
        for param in ("status", "kind"):
            if value := self.request.query_params.get(param):
                qs = qs.filter(**{param: value})
        return qs

    @extend_schema(request=None, responses=s.JobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = self.get_object()
        if not cancel_job(job):
            return Response({"error": "the job has already finished"}, status=status.HTTP_409_CONFLICT)
        job.refresh_from_db()
        return Response(s.JobSerializer(job).data)

    @extend_schema(request=None, responses=s.JobSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        try:
            job = retry_job(self.get_object())
        except JobError as exc:
            return Response({"error": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(s.JobSerializer(job).data)


class StudyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                   mixins.UpdateModelMixin, StaffViewSet):
    queryset = Study.objects.all()
    serializer_class = s.StudySerializer
    lookup_field = "slug"
    action_permissions = {"progress": perms.VIEW_RESULTS, "analysis": perms.VIEW_RESULTS,
                          "export": perms.EXPORT_STUDIES}
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_update(self, serializer):
        fields = {k: v for k, v in serializer.validated_data.items() if k != "seed"}
        lifecycle.update_study(serializer.instance, self.request.user, **fields)

    def perform_create(self, serializer):
        d = serializer.validated_data
        serializer.instance = lifecycle.create_study(
            name=d["name"], config=d.get("config", {}), instructions=d.get("instructions", ""),
            created_by=self.request.user, seed=d.get("seed"),
        )

    @extend_schema(request=None, responses={202: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def prepare(self, request, slug=None):
        """Draw the cases, render them and run the leak audit (background job)."""
        job = lifecycle.create_prepare_job(self.get_object(), request.user)
        return Response(s.JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def audit(self, request, slug=None):
        """Run the leak audit (metadata, independence, pixels) as a background job."""
        job = lifecycle.create_audit_job(self.get_object(), request.user)
        return Response(s.JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=s.StudySerializer)
    @action(detail=True, methods=["post"], url_path="open")
    def open_study(self, request, slug=None):
        study = self.get_object()
        lifecycle.open_study(study, request.user)
        return Response(s.StudySerializer(study).data)

    @extend_schema(request=None, responses=s.StudySerializer)
    @action(detail=True, methods=["post"], url_path="close")
    def close_study(self, request, slug=None):
        study = self.get_object()
        lifecycle.close_study(study, request.user)
        return Response(s.StudySerializer(study).data)

    @extend_schema(request=s.EditorsSerializer, responses=s.StudySerializer)
    @action(detail=True, methods=["post"])
    def editors(self, request, slug=None):
        """Set the coordinators who may change this study (its editors only; at least one)."""
        study = self.get_object()
        body = s.EditorsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        lifecycle.set_editors(study, body.validated_data["editors"], request.user)
        return Response(s.StudySerializer(study).data)

    @extend_schema(request=s.ReopenSerializer, responses=s.StudySerializer)
    @action(detail=True, methods=["post"], url_path="reopen")
    def reopen_study(self, request, slug=None):
        """Reopen a closed study: `confirm` that earlier exports go out of date and give a `reason` (audited)."""
        study = self.get_object()
        body = s.ReopenSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        lifecycle.reopen_study(study, request.user, **body.validated_data)
        return Response(s.StudySerializer(study).data)

    @extend_schema(methods=["GET"], responses=s.AssignmentSerializer(many=True))
    @extend_schema(methods=["POST", "DELETE"], request=s.ReadersSerializer, responses=s.AssignmentSerializer(many=True))
    @action(detail=True, methods=["get", "post", "delete"])
    def readers(self, request, slug=None):
        """List, add (POST) or remove (DELETE; only readers without answers) readers by user name."""
        study = self.get_object()
        if request.method != "GET":
            body = s.ReadersSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            with transaction.atomic():
                if request.method == "POST":
                    sampling.assign_readers(study, body.validated_data["readers"], request.user)
                else:
                    for reader in body.validated_data["readers"]:
                        sampling.unassign_reader(study, reader, request.user)
        assignments = study.assignments.readers().select_related("reader").order_by("reader__username")
        return Response(s.AssignmentSerializer(assignments, many=True).data)

    @extend_schema(responses={200: dict})
    @action(detail=True, methods=["get"])
    def progress(self, request, slug=None):
        rows = study_progress(self.get_object())
        return Response({"readers": [
            {"reader": r.reader, "done": r.done, "remaining": r.remaining, "total": r.total,
             "median_seconds": r.median_seconds, "session": r.session, "completed": r.completed,
             "last_saved": r.last_saved} for r in rows
        ]})

    @extend_schema(parameters=[OpenApiParameter("unsure", str), OpenApiParameter("ci", str)],
                   responses={200: dict, 202: dict})
    @action(detail=True, methods=["get"])
    def analysis(self, request, slug=None):
        """The whole analysis (same JSON as the dashboard's); 202 with the job's progress while it is computed."""
        from readerstudy.stats.analysis import OptionError, analysis_options, analysis_or_job  # scipy, pandas

        try:
            options = analysis_options(request.query_params)
        except OptionError as exc:
            raise ValidationError({"error": str(exc)}) from None
        _, result, job = analysis_or_job(self.get_object(), request.user, **options)
        if job is not None and job.status == job.Status.FAILED:
            return Response({"status": "failed", "job": job.pk, "error": job.error}, status=500)
        if job is not None:  # a large study: computed by a background job; ask again after Retry-After
            return Response({"status": "computing", "job": job.pk, "job_status": job.status, "percent": job.percent,
                             "message": job.message}, status=202, headers={"Retry-After": "2"})
        return Response(result)

    @extend_schema(parameters=[OpenApiParameter("name", str, OpenApiParameter.PATH, enum=list(exports.EXPORTS))],
                   responses={(200, "text/csv"): bytes})
    @action(detail=True, methods=["get"], url_path=r"exports/(?P<name>[\w.]+)")
    def export(self, request, slug=None, name=None):
        if name not in exports.EXPORTS:
            raise Http404(f"unknown export {name!r}; choose from {', '.join(exports.EXPORTS)}")
        return exports.streaming_response(self.get_object(), name, request.user)


class SampleSizeView(APIView):
    """Plan readers and cases: expected interval width and the power of the difference and equivalence
    tests, by seeded simulation from the analysis's model (the fields of the planning page; missing ones
    take its defaults)."""

    permission_classes = [IsAuthenticated, HasPermission]
    read_permission = write_permission = perms.VIEW_STUDIES

    @extend_schema(request=dict, responses={200: dict, 400: dict})
    def post(self, request):
        if not isinstance(request.data, dict):
            raise ValidationError({"error": "send a JSON object"})
        form = SampleSizeForm.with_defaults(request.data)
        result = form.planned()
        if result is None:
            raise ValidationError({name: [str(e) for e in errors] for name, errors in form.errors.items()})
        return Response(result)


# --- reading ---------------------------------------------------------------------

class ReadingStudiesView(APIView):
    """The studies the logged-in reader takes part in, with their progress."""

    @extend_schema(responses={200: dict})
    def get(self, request):
        out = []
        for assignment in reader_assignments(request.user):
            position = reader_position(assignment)
            current = position.current
            out.append({
                "study": assignment.study.slug, "name": assignment.study.name, "status": assignment.study.status,
                "instructions": assignment.study.instructions, "done": position.done, "total": position.total,
                "next_case": current["token"] if current and not position.locked_until else None,
                "locked_until": position.locked_until,
            })
        return Response({"studies": out})


class ReadingCaseView(APIView):
    """One of the reader's own cases: the viewer's data (images as wadouri URLs, questions, own answer)."""

    @extend_schema(responses={200: dict})
    def get(self, request, token):
        case = reader_case(request.user, token)
        position = reader_position(case.assignment)
        if not readable(case.assignment) or not position.may_open(position.row(token)):
            return Response({"error": "this case cannot be opened now: cases are read in order"},
                            status=status.HTTP_409_CONFLICT)
        return Response(case_payload(case, position))


class ReadingAnswerView(APIView):
    """Autosave or submit an answer; repeat the same idempotency key safely."""

    @extend_schema(request=s.AnswerSerializer, responses={200: dict})
    def put(self, request, token):
        case = reader_case(request.user, token)
        if not isinstance(request.data, dict):
            raise ValidationError({"error": "send a JSON object"})
        result = save_answer(case, dict(request.data))
        result["next_case"] = result.pop("next_token")
        return Response(result)

    post = put


class ReaderAccountViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, StaffViewSet):
    """Reader accounts: invite (a one-time set-password link in the reply), send a new link, deactivate, reactivate."""

    read_permission = write_permission = perms.MANAGE_READERS
    serializer_class = s.ReaderAccountSerializer
    lookup_field = "username"
    lookup_value_regex = r"[\w.@+-]+"

    def get_queryset(self):
        return reader_accounts.managed_reader_accounts()

    def _invited(self, invitation, code=status.HTTP_200_OK):
        response = Response(s.InvitationSerializer(invitation).data, status=code)
        response["Cache-Control"] = "no-store"  # the link is a credential
        return response

    @extend_schema(request=s.ReaderAccountSerializer, responses={201: s.InvitationSerializer})
    def create(self, request):
        """Create a reader account; the reply holds its set-password link (e-mailed too where an address is given)."""
        body = s.ReaderAccountSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        fields = dict(body.validated_data)
        fields.update(fields.pop("reader_profile", {}))
        invitation = reader_accounts.invite_reader(by=request.user, base_url=request.build_absolute_uri("/"),
                                                   **fields)
        return self._invited(invitation, status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=s.InvitationSerializer)
    @action(detail=True, methods=["post"])
    def invite(self, request, username=None):
        """A new one-time set-password link."""
        invitation = reader_accounts.reinvite_reader(self.get_object(), by=request.user,
                                                     base_url=request.build_absolute_uri("/"))
        return self._invited(invitation)

    def _set_active(self, active: bool):
        reader = self.get_object()
        reader_accounts.set_reader_active(reader, active, by=self.request.user)
        return Response(s.ReaderAccountSerializer(reader).data)

    @extend_schema(request=None, responses=s.ReaderAccountSerializer)
    @action(detail=True, methods=["post"])
    def deactivate(self, request, username=None):
        """Stop the reader's log-ins, sessions and API tokens; their answers stay."""
        return self._set_active(False)

    @extend_schema(request=None, responses=s.ReaderAccountSerializer)
    @action(detail=True, methods=["post"])
    def reactivate(self, request, username=None):
        return self._set_active(True)


class MeView(APIView):
    @extend_schema(responses={200: dict})
    def get(self, request):
        user = request.user
        return Response({"username": user.get_username(), "roles": roles_of(user), "is_admin": user.is_superuser,
                         "permissions": sorted(user.get_all_permissions())})
