"""Request rates: sign-in attempts per client address and per username, job starts and uploads per user.

DRF throttles, counted in a cache every web process of every host shares
(``CACHES["throttle"]``, on Redis): with a per-process count, four web
processes would each allow the full rate. A refused request gets 429 with
``Retry-After``. When Redis cannot be reached the request is let through
(and logged): the throttle guards the server, it must not take it down.
Rates are settings (``THROTTLE_*``); ``off`` turns one off.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.core.cache import caches
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class _SharedThrottle(SimpleRateThrottle):
    cache_alias = "throttle"

    def __init__(self) -> None:
        self.cache = caches[self.cache_alias]
        super().__init__()

    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            return bool(super().allow_request(request, view))
        except Exception:  # Redis unreachable: serve the request rather than fail it
            logger.warning("Throttle %s could not count a request; letting it through", self.scope, exc_info=True)
            return True


class LoginAddressThrottle(_SharedThrottle):
    """Sign-in attempts from one client address (uvicorn's, which trusts only the configured proxies)."""

    scope = "login-address"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginUsernameThrottle(_SharedThrottle):
    """Sign-in attempts on one username, from anywhere: guessing one account's password from many addresses."""

    scope = "login-username"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        data = request.data
        username = data.get("username") if hasattr(data, "get") else None
        if not isinstance(username, str) or not username.strip():
            return None  # nothing to guess against: the view answers 400
        ident = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
        return self.cache_format % {"scope": self.scope, "ident": ident}


class _PerUserWriteThrottle(_SharedThrottle):
    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        user = request.user
        if not getattr(user, "is_authenticated", False):
            return None  # refused by authentication anyway
        return self.cache_format % {"scope": self.scope, "ident": user.pk}


class JobStartThrottle(_PerUserWriteThrottle):
    """Jobs one user starts through the API."""

    scope = "job-start"


class UploadThrottle(_PerUserWriteThrottle):
    """Documents one user uploads."""

    scope = "upload"
