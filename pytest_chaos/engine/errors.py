"""Errors the engine reports through its API, with upstream Toxiproxy's messages."""

from __future__ import annotations


class ApiError(Exception):
    """An error with the HTTP status and the exact message a Toxiproxy client expects."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(detail: str) -> ApiError:
    """A 400 with upstream's `bad request body: ...` prefix."""
    return ApiError(400, f"bad request body: {detail}")


PROXY_NOT_FOUND = "proxy not found"
PROXY_EXISTS = "proxy already exists"
INVALID_STREAM = "stream was invalid, can be either upstream or downstream"
INVALID_TOXIC_TYPE = "invalid toxic type"
TOXIC_EXISTS = "toxic already exists"
TOXIC_NOT_FOUND = "toxic not found"
