"""The real settings with bench/floor_urls.py as the URL conf (bench/load_bench.py only)."""

from readerstudy.settings import *  # noqa: F401,F403

ROOT_URLCONF = "floor_urls"
