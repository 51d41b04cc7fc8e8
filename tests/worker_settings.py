"""Settings for real worker processes started by tests (tests/test_job_workers.py): the test settings with
the task backend named by TEST_WORKER_BACKEND ("database" or "rq") instead of running tasks inline."""

import os

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

if os.environ.get("TEST_WORKER_BACKEND", "database") == "rq":
    TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}}
    INSTALLED_APPS = [*INSTALLED_APPS, "django_rq"]
    RQ_QUEUES = {"default": {"URL": os.environ["REDIS_URL"], "DEFAULT_TIMEOUT": 3600}}
else:
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
