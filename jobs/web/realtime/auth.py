"""WebSocket sign-in by DRF token in the query string (``?token=``).

Browsers cannot set headers on a WebSocket, so API clients pass their token
in the URL. It sits inside Channels' ``AuthMiddlewareStack``: without a
token the session user stands; with one, the token decides (an unknown token
means anonymous, never a fallback to the session).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator
from django.contrib.auth.models import AnonymousUser


@database_sync_to_async
def user_for_token(key: str) -> Any:
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


class TokenAuthMiddleware(BaseMiddleware):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" in query:
            scope = dict(scope, user=await user_for_token(query["token"][0]))
        return await super().__call__(scope, receive, send)


class BrowserOriginValidator(OriginValidator):
    """Refuses a browser's cross-site WebSocket (it would carry the session cookie).

    Browsers always send ``Origin``; it must name one of ``ALLOWED_HOSTS``.
    Clients that send none (scripts using ``?token=``) cannot ride on a
    victim's cookie, so they pass.
    """

    def valid_origin(self, parsed_origin: Any) -> bool:
        return parsed_origin is None or bool(super().valid_origin(parsed_origin))


def websocket_application(inner: Any) -> Any:
    """The WebSocket side of ``config.asgi``: origin check, session auth, then ``?token=``."""
    from channels.auth import AuthMiddlewareStack
    from django.conf import settings

    return BrowserOriginValidator(AuthMiddlewareStack(TokenAuthMiddleware(inner)), settings.ALLOWED_HOSTS)
