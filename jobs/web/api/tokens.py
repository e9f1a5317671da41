"""API tokens (django-rest-knox): signed in by username and password, stored as digests, expiring, revocable.

``POST /api/auth/token`` answers ``{"token", "expiry"}``: a new token per call (one per device or
client), valid ``API_TOKEN_TTL_HOURS``. The database keeps only its SHA-512 digest. ``POST
/api/auth/logout`` revokes the token the request carries, ``POST /api/auth/logout-all`` every token
of its user. ``POST /api/auth/ws-ticket`` gives a single-use ticket for the WebSocket (``?ticket=``),
so the token never goes into a URL. Requests send ``Authorization: Token <token>``, as with DRF's
tokens before; an expired token is refused (401) and deleted when presented.

The token endpoint is throttled per client address and per username; django-axes locks a
username out from one address after ``AXES_FAILURE_LIMIT`` failures (``jobs/web/lockout.py``).
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.signals import user_logged_in, user_logged_out
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from knox.models import AuthToken
from rest_framework import serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.web.api.throttles import LoginAddressThrottle, LoginUsernameThrottle
from jobs.web.credentials import WS_TICKET_TTL_S, ExpiringTokenAuthentication, issue_token, issue_ws_ticket
from jobs.web.lockout import lockout_response

TOO_MANY = OpenApiResponse(OpenApiTypes.OBJECT, description="too many requests; `Retry-After` says when to retry")
UNAUTHORIZED = OpenApiResponse(OpenApiTypes.OBJECT, description="no valid token")
REVOKED = OpenApiResponse(description="revoked")


def _token_fields() -> dict[str, serializers.Field]:
    return {"token": serializers.CharField(), "expiry": serializers.DateTimeField(allow_null=True)}


@extend_schema(
    request=AuthTokenSerializer,
    responses={200: inline_serializer("ApiToken", _token_fields()), 429: TOO_MANY},
)
class ObtainExpiringToken(APIView):
    """A username and password (form or JSON) for a new API token and its expiry."""

    # Each guess costs a full PBKDF2 on the web server: per client address and per username.
    throttle_classes = [LoginAddressThrottle, LoginUsernameThrottle]
    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []
    serializer_class = AuthTokenSerializer

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        if not serializer.is_valid():
            # django-axes refused a locked-out username and address before the password was checked.
            locked = lockout_response(request)
            if locked is not None:
                return locked
            raise ValidationError(serializer.errors)
        user = serializer.validated_data["user"]
        instance, token = issue_token(user)
        user_logged_in.send(sender=user.__class__, request=request._request, user=user)
        expiry = serializers.DateTimeField().to_representation(instance.expiry) if instance.expiry else None
        return Response({"token": token, "expiry": expiry})


@extend_schema(request=None, responses={204: REVOKED, 401: UNAUTHORIZED})
class RevokeToken(APIView):
    """Revoke the token this request carries (sign this device out)."""

    authentication_classes = [ExpiringTokenAuthentication]
    permission_classes = [IsAuthenticated]

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        request.auth.delete()
        user_logged_out.send(sender=request.user.__class__, request=request._request, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(request=None, responses={204: REVOKED, 401: UNAUTHORIZED})
class RevokeAllTokens(APIView):
    """Revoke every token of this request's user (sign every device out)."""

    authentication_classes = [ExpiringTokenAuthentication]
    permission_classes = [IsAuthenticated]

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        AuthToken.objects.filter(user=request.user).delete()
        user_logged_out.send(sender=request.user.__class__, request=request._request, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(
    request=None,
    responses={
        200: inline_serializer(
            "WebSocketTicket", {"ticket": serializers.CharField(), "expires_in": serializers.IntegerField()}
        ),
        401: UNAUTHORIZED,
    },
)
class WebSocketTicket(APIView):
    """A single-use ticket to open a WebSocket as this user: ``/ws/jobs/?ticket=<ticket>`` within 30 s."""

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        user_id = cast(int, request.user.pk)  # IsAuthenticated: a saved user
        return Response({"ticket": issue_ws_ticket(user_id), "expires_in": WS_TICKET_TTL_S})


obtain_auth_token = ObtainExpiringToken.as_view()
