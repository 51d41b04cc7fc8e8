from django.urls import path

from . import views

urlpatterns = [
    path("", views.DashboardView.as_view(), name="analysis"),
    path("analysis.json", views.AnalysisJsonView.as_view(), name="analysis-json"),
    path("charts/<str:name>.png", views.ChartView.as_view(), name="analysis-chart"),
    path("export/<str:name>", views.ExportView.as_view(), name="analysis-export"),
    path("marks/", views.MarksView.as_view(), name="analysis-marks"),
    path("marks/<int:case_id>.png", views.MarksHeatmapView.as_view(), name="analysis-marks-heatmap"),
]
