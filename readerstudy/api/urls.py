from django.urls import path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from . import auth, views
from .docs import ApiDocsView

app_name = "api"

router = DefaultRouter()
router.trailing_slash = "/?"  # accept URLs with and without the slash (file-like export names read better without)
router.include_format_suffixes = False  # "answers.csv" is an export name, not a format suffix
router.register("datasets", views.DatasetViewSet, basename="dataset")
router.register("pool", views.PoolItemViewSet, basename="poolitem")
router.register("generators", views.GeneratorViewSet, basename="generator")
router.register("jobs", views.JobViewSet, basename="job")
router.register("studies", views.StudyViewSet, basename="study")
router.register("readers", views.ReaderAccountViewSet, basename="reader")

urlpatterns = [
    path("auth/token", auth.TokenView.as_view(), name="api-token"),
    path("auth/logout", auth.TokenLogoutView.as_view(), name="api-logout"),
    path("auth/logout-all", auth.TokenLogoutAllView.as_view(), name="api-logout-all"),
    path("me", views.MeView.as_view(), name="api-me"),
    path("planning/sample-size", views.SampleSizeView.as_view(), name="api-sample-size"),
    path("pool/upload", views.PoolUploadView.as_view(), name="api-pool-upload"),
    path("reading/studies", views.ReadingStudiesView.as_view(), name="api-reading-studies"),
    path("reading/cases/<str:token>", views.ReadingCaseView.as_view(), name="api-reading-case"),
    path("reading/cases/<str:token>/answer", views.ReadingAnswerView.as_view(), name="api-reading-answer"),
    path("schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs", ApiDocsView.as_view(url_name="api:api-schema"), name="api-docs"),
    *router.urls,
]
