from django.contrib import admin
from django.urls import include, path

from .accounts.views import AdminLoginForm
from .stats.views import SampleSizeView
from . import views

admin.site.site_header = "Reader-study platform administration"
admin.site.login_form = AdminLoginForm

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/", include("readerstudy.accounts.urls")),
    path("pool/", include("readerstudy.imaging.urls")),
    path("jobs/", include("readerstudy.jobs.urls")),
    path("generators/", include("generation.urls")),
    path("studies/<slug:slug>/analysis/", include("readerstudy.stats.urls")),
    path("planning/sample-size/", SampleSizeView.as_view(), name="sample-size"),
    path("studies/", include("readerstudy.studies.urls")),
    path("read/", include("readerstudy.reading.urls")),
    path("api/v1/", include("readerstudy.api.urls")),
    path("admin/", admin.site.urls),
]
