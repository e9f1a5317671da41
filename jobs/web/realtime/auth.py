"""WebSocket sign-in: the session cookie, a single-use ticket (``?ticket=``), or (deprecated) ``?token=``.

Browsers cannot set headers on a WebSocket. A program asks ``POST /api/auth/ws-ticket``
(with its API token) for a ticket valid 30 s and opens ``/ws/jobs/?ticket=<ticket>``: the
ticket is used up by that connect, so a URL that ends up in a log or a proxy's history is
worth nothing. ``?token=<API token>`` still works for one release and logs a deprecation
warning (naming the user, never the token). It sits inside Channels' ``AuthMiddlewareStack``:
without either the session user stands; with one, it decides (an unknown or used ticket, or
an unknown or expired token, means anonymous, never a fallback to the session).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator
from django.contrib.auth.models import AnonymousUser

logger = logging.getLogger(__name__)


@database_sync_to_async
def user_for_token(key: str) -> Any:
    from rest_framework.exceptions import AuthenticationFailed

    from jobs.web.credentials import ExpiringTokenAuthentication

    try:
        user, _ = ExpiringTokenAuthentication().authenticate_credentials(key.encode())
    except AuthenticationFailed:
        return AnonymousUser()
    logger.warning(
        "WebSocket sign-in with ?token= is deprecated (user %s): use ?ticket= from POST /api/auth/ws-ticket",
        user.get_username(),
    )
    return user


@database_sync_to_async
def user_for_ticket(ticket: str) -> Any:
    from django.contrib.auth import get_user_model

    from jobs.web.credentials import redeem_ws_ticket

    user_id = redeem_ws_ticket(ticket)
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first() if user_id is not None else None
    return user or AnonymousUser()


class TokenAuthMiddleware(BaseMiddleware):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "ticket" in query:
            scope = dict(scope, user=await user_for_ticket(query["ticket"][0]))
        elif "token" in query:
            scope = dict(scope, user=await user_for_token(query["token"][0]))
        return await super().__call__(scope, receive, send)


class BrowserOriginValidator(OriginValidator):
    """Refuses a browser's cross-site WebSocket (it would carry the session cookie).

    Browsers always send ``Origin``; it must name one of ``ALLOWED_HOSTS``.
    Clients that send none (scripts using ``?ticket=`` or ``?token=``) cannot
    ride on a victim's cookie, so they pass.
    """

    def valid_origin(self, parsed_origin: Any) -> bool:
        return parsed_origin is None or bool(super().valid_origin(parsed_origin))


def websocket_application(inner: Any) -> Any:
    """The WebSocket side of ``config.asgi``: origin check, session auth, then ``?ticket=`` / ``?token=``."""
    from channels.auth import AuthMiddlewareStack
    from django.conf import settings

    return BrowserOriginValidator(AuthMiddlewareStack(TokenAuthMiddleware(inner)), settings.ALLOWED_HOSTS)
