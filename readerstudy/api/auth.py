"""Token log-in for API clients, with the same failure throttling as the web log-in."""

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from readerstudy.accounts import throttle


class TokenView(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(
        request=inline_serializer("Credentials", {"username": serializers.CharField(),
                                                  "password": serializers.CharField()}),
        responses={200: inline_serializer("TokenReply", {"token": serializers.CharField()})},
    )
    def post(self, request):
        """Exchange a user name and password for an API token (send it as `Authorization: Token <key>`)."""
        data = request.data if isinstance(request.data, dict) else {}
        username, password = str(data.get("username", "")), str(data.get("password", ""))
        address = throttle.client_address(request)
        if throttle.is_locked(username, address):
            return Response({"error": "too many failed log-ins; try again later"},
                            status=status.HTTP_429_TOO_MANY_REQUESTS)
        user = authenticate(request, username=username, password=password)
        if user is None or not user.is_active:
            throttle.record_failure(username, address)
            return Response({"error": "wrong user name or password"}, status=status.HTTP_400_BAD_REQUEST)
        throttle.clear(username, address)
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})
