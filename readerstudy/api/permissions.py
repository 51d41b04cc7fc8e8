"""API access: Django permissions, as on the pages (see accounts/permissions.py)."""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from readerstudy.accounts.permissions import MANAGE_STUDIES


class HasPermission(BasePermission):
    """A view's `read_permission` for safe methods and `write_permission` for the others; an action named
    in `action_permissions` needs that permission instead. Objects that are studies also need the study's
    own permission to be changed (its editors), except for actions in `study_agnostic_actions`."""

    message = "Your account does not have the permission for this."

    def has_permission(self, request, view):
        return request.user.has_perm(self._required(request, view))

    def has_object_permission(self, request, view, obj):
        from readerstudy.studies.models import Study

        if (isinstance(obj, Study) and request.method not in SAFE_METHODS
                and getattr(view, "action", None) not in getattr(view, "study_agnostic_actions", ())):
            self.message = "Only this study's editors may change it."
            return request.user.has_perm(MANAGE_STUDIES, obj)
        return True

    @staticmethod
    def _required(request, view) -> str:
        by_action = getattr(view, "action_permissions", {})
        action = getattr(view, "action", None)
        if action in by_action:
            return by_action[action]
        return view.read_permission if request.method in SAFE_METHODS else view.write_permission
