from django.urls import path

from . import views

urlpatterns = [
    path("", views.StudyListView.as_view(), name="study-list"),
    path("new/", views.StudyCreateView.as_view(), name="study-create"),
    path("<slug:slug>/", views.StudyDetailView.as_view(), name="study-detail"),
    path("<slug:slug>/edit/", views.StudyUpdateView.as_view(), name="study-edit"),
    path("<slug:slug>/progress/", views.StudyProgressView.as_view(), name="study-progress"),
    path("<slug:slug>/<str:action>/", views.StudyActionView.as_view(), name="study-action"),
]
