"""The "default" storage (uploaded documents, thumbnails, exports), chosen from the environment.

The local file system under MEDIA_ROOT by default; S3-compatible object
storage, shared by every host, when ``AWS_STORAGE_BUCKET_NAME`` is set. The
variables are django-storages' own names. A function of the environment
(rather than module-level code in settings) so that a test can build the
same entry for the S3 server it started.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from config.env import ImproperEnvironment

FILE_SYSTEM = "django.core.files.storage.FileSystemStorage"
S3 = "storages.backends.s3.S3Storage"
#: django-storages keeps an S3 file it reads in memory unless told to spool it to disk past this size.
DEFAULT_S3_MAX_MEMORY_SIZE = 1024 * 1024


def default_file_storage(environ: Mapping[str, str]) -> dict[str, Any]:
    """``STORAGES["default"]`` for this environment."""
    bucket = environ.get("AWS_STORAGE_BUCKET_NAME", "")
    if not bucket:
        return {"BACKEND": FILE_SYSTEM}
    endpoint = environ.get("AWS_S3_ENDPOINT_URL") or None
    raw_memory = environ.get("AWS_S3_MAX_MEMORY_SIZE") or str(DEFAULT_S3_MAX_MEMORY_SIZE)
    try:
        max_memory_size = int(raw_memory)
    except ValueError:
        raise ImproperEnvironment(f"AWS_S3_MAX_MEMORY_SIZE must be an integer, got {raw_memory!r}") from None
    return {
        "BACKEND": S3,
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint,
            # Empty: boto3 finds credentials itself (an instance role, ~/.aws).
            "access_key": environ.get("AWS_ACCESS_KEY_ID") or None,
            "secret_key": environ.get("AWS_SECRET_ACCESS_KEY") or None,
            "region_name": environ.get("AWS_S3_REGION_NAME") or "us-east-1",
            "signature_version": "s3v4",
            # MinIO and other self-hosted servers answer at one host name: path-style URLs.
            "addressing_style": environ.get("AWS_S3_ADDRESSING_STYLE") or ("path" if endpoint else None),
            # Private objects; a signed URL, if one is ever made, expires within a minute.
            "default_acl": None,
            "querystring_expire": 60,
            "max_memory_size": max_memory_size,
        },
    }
