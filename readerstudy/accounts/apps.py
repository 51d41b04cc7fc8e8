from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "readerstudy.accounts"
    label = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self):
        from .roles import ensure_role_groups

        # After every migrate, so the groups' permissions exist for all apps.
        post_migrate.connect(ensure_role_groups, dispatch_uid="accounts.ensure_role_groups")
