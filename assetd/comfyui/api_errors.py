"""ComfyUI's error answers: ``{"error": {"code", "message", "details"}}`` with its codes."""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError", "envelope", "not_found"]


class ApiError(Exception):
    """An answer of the API that is an error: an HTTP status, ComfyUI's code, a message."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        return envelope(self.code, self.message, self.details)


def envelope(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body of every error: ``details`` is always there (``{}`` by default)."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def not_found(asset_id: str, *, with_id: bool = True) -> ApiError:
    return ApiError(
        404,
        "ASSET_NOT_FOUND",
        f"AssetReference {asset_id} not found",
        {"id": asset_id} if with_id else {},
    )
