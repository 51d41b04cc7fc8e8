from django.urls import path

from . import views

urlpatterns = [
    path("", views.JobListView.as_view(), name="job-list"),
    path("<int:pk>/", views.JobDetailView.as_view(), name="job-detail"),
    path("<int:pk>/state.json", views.JobStateView.as_view(), name="job-state"),
    path("<int:pk>/cancel/", views.JobCancelView.as_view(), name="job-cancel"),
    path("<int:pk>/retry/", views.JobRetryView.as_view(), name="job-retry"),
]
