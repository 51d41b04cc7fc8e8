"""What is checked: Django permissions, one name per action, and who may change a particular study.

Pages use Django's PermissionRequiredMixin, the API `api.permissions.HasPermission`,
templates `perms`; none of them look at group names. The role groups
(`accounts.roles`) hand these permissions out. A study's editors are an object
permission answered by `StudyEditorBackend`: `user.has_perm(MANAGE_STUDIES, study)`.
"""

from django.contrib.auth import get_user_model

READ_CASES = "reading.read_cases"
VIEW_POOL = "imaging.view_poolitem"
IMPORT_IMAGES = "imaging.import_images"
VIEW_GENERATORS = "generation.view_generator"
GENERATE_IMAGES = "generation.generate_images"
VIEW_JOBS = "jobs.view_job"
MANAGE_JOBS = "jobs.manage_jobs"
VIEW_STUDIES = "studies.view_study"
MANAGE_STUDIES = "studies.manage_study"
VIEW_RESULTS = "studies.view_results"
EXPORT_STUDIES = "studies.export_study"
MANAGE_READERS = "accounts.manage_readers"


def users_with(permission: str, include_superusers: bool = True):
    """Active users holding `permission` through a group or directly (Django's `with_perm`)."""
    return get_user_model().objects.with_perm(permission, include_superusers=include_superusers,
                                              backend="django.contrib.auth.backends.ModelBackend")


def readers():
    """Who may be assigned studies (the `read_cases` permission), superusers excepted."""
    return users_with(READ_CASES, include_superusers=False)


class StudyEditorBackend:
    """Object permission for a study: its editors may change it (and superusers); a study with no
    editors (made before editors existed, or by a command) is open to every coordinator.

    Only `has_perm(user, MANAGE_STUDIES, study)` is answered here; everything else is the
    ModelBackend's. The model permission is still required.
    """

    def authenticate(self, request, **credentials):
        return None

    def has_perm(self, user_obj, perm, obj=None):
        from readerstudy.studies.models import Study

        if perm != MANAGE_STUDIES or not isinstance(obj, Study) or not user_obj.is_active:
            return False
        if not user_obj.has_perm(MANAGE_STUDIES):
            return False
        if user_obj.is_superuser:
            return True
        editors = set(obj.editors.values_list("pk", flat=True))
        return not editors or user_obj.pk in editors


def can_edit_study(user, study) -> bool:
    return user.has_perm(MANAGE_STUDIES, study)
