from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "readerstudy.api"
    label = "api"
    verbose_name = "REST API"
