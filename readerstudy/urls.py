from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views

admin.site.site_header = "Reader-study platform administration"

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("pool/", include("readerstudy.imaging.urls")),
    path("jobs/", include("readerstudy.jobs.urls")),
    path("generators/", include("generation.urls")),
    path("studies/<slug:slug>/analysis/", include("readerstudy.stats.urls")),
    path("studies/", include("readerstudy.studies.urls")),
    path("read/", include("readerstudy.reading.urls")),
    path("admin/", admin.site.urls),
]
