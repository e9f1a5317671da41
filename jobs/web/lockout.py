"""Sign-in lockout (django-axes): a username is locked out from one client address after repeated failures.

Locking by username *and* address together (``AXES_LOCKOUT_PARAMETERS``) means a guesser
elsewhere cannot lock ``admin`` out: only the pair that failed is refused, for
``AXES_COOLOFF_MINUTES``. It covers every sign-in that goes through Django's
``authenticate()`` with a request: the admin login, ``/accounts/login/`` and the API's
``POST /api/auth/token`` (otherwise guessing would simply move to the API).
The address is the one uvicorn gives Django, which trusts ``X-Forwarded-For`` from
``FORWARDED_ALLOW_IPS`` only.
"""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_cool_off, get_lockout_message
from django.http import HttpRequest, HttpResponse
from rest_framework.response import Response


class RequestLockoutBackend(AxesStandaloneBackend):
    """django-axes' check, for sign-ins that come with a request.

    ``authenticate()`` without a request (a shell, a management command, the test
    client's ``login``) is no remote guess: it is passed on to the next backend
    instead of failing as axes' own backend does.
    """

    def authenticate(self, request: HttpRequest | None, *args: Any, **kwargs: Any) -> Any:
        if request is None:
            return None
        return super().authenticate(request, *args, **kwargs)


def _retry_after() -> str | None:
    cool_off = get_cool_off()
    return str(max(1, int(cool_off.total_seconds()))) if cool_off else None


def lockout_page(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """The admin's and ``/accounts/login/``'s answer to a locked-out username and address: 429."""
    response = HttpResponse(get_lockout_message(), status=429, content_type="text/plain; charset=utf-8")
    retry_after = _retry_after()
    if retry_after:
        response["Retry-After"] = retry_after
    return response


def lockout_response(request: Any) -> Response | None:
    """The token endpoint's 429 when django-axes refused this sign-in (None when it did not)."""
    if not getattr(request, "axes_locked_out", False):
        return None
    retry_after = _retry_after()
    headers = {"Retry-After": retry_after} if retry_after else None
    message = str(get_lockout_message())
    return Response({"detail": message, "errors": {"username": [message]}}, status=429, headers=headers)
