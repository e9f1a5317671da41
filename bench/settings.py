"""Settings for the web benchmarks: the real settings with a bench-only URLconf (``bench/urls.py``)."""

from __future__ import annotations

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
