"""API log-in: a user name and password for an expiring token (django-rest-knox keeps only its hash).

Failures are counted by django-axes with the page and admin log-ins; a locked-out name or address
gets 429 without its password being checked.
"""

from django.contrib.auth import authenticate, user_logged_in
from drf_spectacular.utils import extend_schema, inline_serializer
from knox.models import AuthToken
from knox.settings import knox_settings
from knox.views import LogoutAllView, LogoutView
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from readerstudy.accounts.views import lockout_message


class TokenView(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(
        request=inline_serializer("Credentials", {"username": serializers.CharField(),
                                                  "password": serializers.CharField()}),
        responses={200: inline_serializer("TokenReply", {"token": serializers.CharField(),
                                                         "expiry": serializers.DateTimeField()})},
    )
    def post(self, request):
        """Exchange a user name and password for an API token (send it as `Authorization: Token <token>`).

        The token expires after `READERSTUDY_API_TOKEN_HOURS`; `auth/logout` revokes it, `auth/logout-all`
        every token of the user. Only a hash of it is stored.
        """
        data = request.data if isinstance(request.data, dict) else {}
        username, password = str(data.get("username", "")), str(data.get("password", ""))
        # The Django request, so that django-axes and the log-in signals see what the pages give them.
        http_request = request._request
        user = authenticate(http_request, username=username, password=password)
        if getattr(http_request, "axes_locked_out", False):
            return Response({"error": lockout_message()}, status=status.HTTP_429_TOO_MANY_REQUESTS)
        if user is None or not user.is_active:
            return Response({"error": "wrong user name or password"}, status=status.HTTP_400_BAD_REQUEST)
        _drop_oldest_tokens(user)
        instance, token = AuthToken.objects.create(user, knox_settings.TOKEN_TTL)
        user_logged_in.send(sender=user.__class__, request=http_request, user=user)
        return Response({"token": token, "expiry": instance.expiry})


def _drop_oldest_tokens(user) -> None:
    """Keep a user within REST_KNOX's TOKEN_LIMIT_PER_USER by revoking their oldest tokens."""
    limit = knox_settings.TOKEN_LIMIT_PER_USER
    if limit:
        keep = AuthToken.objects.filter(user=user).order_by("-created").values("pk")[: limit - 1]
        AuthToken.objects.filter(user=user).exclude(pk__in=keep).delete()


class TokenLogoutView(LogoutView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request, format=None):
        """Revoke the token this request was made with."""
        return super().post(request, format)


class TokenLogoutAllView(LogoutAllView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request, format=None):
        """Revoke every API token of this user."""
        return super().post(request, format)
