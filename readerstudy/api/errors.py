"""API errors as {"error": message, "detail": ...}: domain errors become clear 4xx answers, never 500s."""

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_handler

from readerstudy.accounts.readers import ReaderAccountError
from readerstudy.reading.answers import AnswerError
from readerstudy.studies.config import StudyConfigError


def exception_handler(exc, context):
    if isinstance(exc, AnswerError):
        return Response(exc.as_dict(), status=exc.status)
    if isinstance(exc, (StudyConfigError, ReaderAccountError)):
        return Response({"error": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    response = drf_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"error": str(response.data["detail"]), **response.data}
    elif response is not None:
        response.data = {"error": "invalid input", "detail": response.data}
    return response
