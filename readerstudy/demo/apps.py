from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo (`manage.py build_demo`): it uses every other app, and no app uses it."""

    name = "readerstudy.demo"
    label = "demo"
    verbose_name = "Demo"
