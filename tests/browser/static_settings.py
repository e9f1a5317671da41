"""Settings of the production-like web server in ``test_static_files.py``.

The test settings (database, Redis namespace, test apps), but with production's
static storage (hashed names, compressed twins, a manifest) and DEBUG off: the
browser sees what production serves. ``STATIC_ROOT`` comes from the environment,
a temporary directory that the test fills with ``collectstatic``.
"""

from __future__ import annotations

import sys

from config.settings_test import *  # noqa: F403
from config.settings_test import STORAGES

# config.settings as the test settings imported it (after setting the test environment):
# importing it here by name would let import sorting move it above them.
_production = sys.modules["config.settings"]

DEBUG = False
STORAGES = {**STORAGES, "staticfiles": _production.STORAGES["staticfiles"]}
