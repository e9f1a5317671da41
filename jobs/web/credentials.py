"""API tokens and WebSocket tickets: how they are issued, checked and used up (``jobs.web.api.tokens`` serves them).

Tokens are django-rest-knox's: the database keeps a SHA-512 digest and an expiry
(``API_TOKEN_TTL_HOURS``), never the token. Tickets live in Redis for
``WS_TICKET_TTL_S`` seconds, under a digest too, and are deleted by the connect that uses them.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from typing import Any

import redis
from django.conf import settings
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from knox.auth import TokenAuthentication
from knox.models import AuthToken

from jobs.core.redis_connection import connect_redis

#: Seconds a WebSocket ticket stays valid.
WS_TICKET_TTL_S = 30


class ExpiringTokenAuthentication(TokenAuthentication):
    """Knox's token check, one query per request: no refresh, no sweep of the user's other tokens.

    Knox reads every token of the user on each request to delete expired ones; here only the
    presented token is looked at (deleted once expired); a user's other expired tokens are
    deleted when they sign in again (``issue_token``).
    """

    def _cleanup_token(self, auth_token: AuthToken) -> bool:
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            auth_token.delete()
            return True
        return False


class ExpiringTokenScheme(OpenApiAuthenticationExtension):
    """How the API schema (and Swagger UI's Authorize button) describes these tokens."""

    target_class = ExpiringTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": 'An API token from POST /api/auth/token, sent as "Token <token>"; it expires.',
        }


def issue_token(user: Any) -> tuple[AuthToken, str]:
    """A new token for ``user``, valid ``API_TOKEN_TTL_HOURS``: the row (digest only) and the token.

    The user's expired tokens are deleted on the way.
    """
    AuthToken.objects.filter(user=user, expiry__lt=timezone.now()).delete()
    instance, token = AuthToken.objects.create(user=user)
    return instance, token


def _ticket_key(ticket: str) -> str:
    # The key holds a digest: a Redis dump or MONITOR shows no usable ticket.
    return f"{settings.DRAMATIQ_NAMESPACE}:ws-ticket:{hashlib.sha256(ticket.encode()).hexdigest()}"


@functools.cache
def _redis() -> redis.Redis:
    # One connection pool per process (through Sentinel, a new client would first ask for the primary).
    return connect_redis(socket_timeout=2, socket_connect_timeout=2)


def issue_ws_ticket(user_id: int) -> str:
    """A single-use WebSocket ticket for ``user_id``, valid ``WS_TICKET_TTL_S`` seconds."""
    ticket = secrets.token_urlsafe(32)
    _redis().set(_ticket_key(ticket), str(user_id), ex=WS_TICKET_TTL_S)
    return ticket


def redeem_ws_ticket(ticket: str) -> int | None:
    """The user id of a ticket, which is used up (GETDEL: two connects cannot both redeem it)."""
    if not ticket or len(ticket) > 100:
        return None
    value = _redis().getdel(_ticket_key(ticket))
    return int(value) if value is not None else None
