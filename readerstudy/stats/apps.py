from django.apps import AppConfig


class StatsConfig(AppConfig):
    name = "readerstudy.stats"
    label = "stats"
    verbose_name = "Statistics and exports"
