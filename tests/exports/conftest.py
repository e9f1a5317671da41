from __future__ import annotations

import pytest


@pytest.fixture
def media_root(settings, tmp_path):
    """Exported files go to a directory of this test's own."""
    settings.MEDIA_ROOT = tmp_path
    return tmp_path
