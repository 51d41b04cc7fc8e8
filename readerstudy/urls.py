from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.urls import include, path

from .accounts.views import ThrottledLoginView
from .stats.views import SampleSizeView
from . import views

admin.site.site_header = "Reader-study platform administration"

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("pool/", include("readerstudy.imaging.urls")),
    path("jobs/", include("readerstudy.jobs.urls")),
    path("generators/", include("generation.urls")),
    path("studies/<slug:slug>/analysis/", include("readerstudy.stats.urls")),
    path("planning/sample-size/", SampleSizeView.as_view(), name="sample-size"),
    path("studies/", include("readerstudy.studies.urls")),
    path("read/", include("readerstudy.reading.urls")),
    path("api/v1/", include("readerstudy.api.urls")),
    path("admin/login/", ThrottledLoginView.as_view(
        template_name="admin/login.html", authentication_form=AdminAuthenticationForm, next_page="admin:index",
        extra_context={"site_header": admin.site.site_header, "site_title": admin.site.site_title, "title": "Log in"},
    ), name="admin-login"),
    path("admin/", admin.site.urls),
]
