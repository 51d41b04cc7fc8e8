from django.urls import path

from . import views

urlpatterns = [
    path("", views.GeneratorListView.as_view(), name="generator-list"),
    path("<int:pk>/", views.GeneratorDetailView.as_view(), name="generator-detail"),
    path("<int:pk>/realism/", views.MeasureRealismView.as_view(), name="generator-realism"),
    path("generate/", views.GenerateView.as_view(), name="generate"),
]
