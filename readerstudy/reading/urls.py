from django.urls import path

from . import views

urlpatterns = [
    path("", views.WorklistView.as_view(), name="worklist"),
    path("case/<str:token>/", views.CaseView.as_view(), name="read-case"),
    path("case/<str:token>/state", views.CaseStateView.as_view(), name="read-state"),
    path("case/<str:token>/answer", views.AnswerView.as_view(), name="read-answer"),
    path("case/<str:token>/slices/<int:number>", views.SliceView.as_view(), name="read-slice"),
    path("case/<str:token>/<str:plane>/<int:number>", views.ReformatView.as_view(), name="read-reformat"),
    path("<slug:slug>/", views.StudyResumeView.as_view(), name="read-study"),
    path("<slug:slug>/done/", views.StudyDoneView.as_view(), name="read-done"),
    path("<slug:slug>/break/", views.SessionBreakView.as_view(), name="read-break"),
    path("<slug:slug>/cases/", views.CaseListView.as_view(), name="read-cases"),
]
