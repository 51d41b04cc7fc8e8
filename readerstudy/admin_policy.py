"""The admin is a window onto the data, not a door around the domain rules.

Answers, studies (status, configuration, cases, reader orders), jobs and the
provenance of pool items change only through the domain functions the pages,
the API and the commands call (revisions, audit events, leak audits, locks);
their admin pages are for looking. `ViewOnly` removes add, change and delete.
"""

from django.contrib import admin


class ViewOnly:
    """Mixin for ModelAdmin and inlines: every field shown, nothing added, changed or deleted here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ViewOnlyAdmin(ViewOnly, admin.ModelAdmin):
    pass
