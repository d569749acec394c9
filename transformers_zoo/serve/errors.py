"""Errors as OpenAI's API writes them: `{"error": {"message", "type", "param", "code"}}` with a 4xx status.

Clients built on the `openai` package read `message` and raise by status (400 BadRequestError, 401
AuthenticationError, 404 NotFoundError, 413, 429 RateLimitError), so every refusal of the server goes through
`APIError` (or is turned into one here: FastAPI's validation errors, unknown paths), and the server keeps
serving after each.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

INVALID = "invalid_request_error"


class APIError(Exception):
    """A refused request: HTTP `status`, a one-line `message`, the request field at fault (`param`) and a
    machine-readable `code`."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str = INVALID):  # noqa: A002 - OpenAI's field name
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"msg": "invalid request", "loc": (), "type": ""}
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid":
        return APIError(400, "the request body is not valid JSON", code="invalid_json").response()
    if not loc and first.get("type") in ("model_attributes_type", "dict_type"):
        return APIError(400, "the request body must be a JSON object", code="invalid_type").response()
    param = ".".join(loc) or None
    message = first.get("msg", "invalid value")
    if param:
        message = f"{param}: {message}"
    code = "missing_required_parameter" if first.get("type") == "missing" else "invalid_type"
    return APIError(400, message, param=param, code=code).response()


def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    messages = {404: "not found", 405: "method not allowed"}
    message = messages.get(exc.status_code, str(exc.detail))
    return APIError(exc.status_code, message, code="not_found" if exc.status_code == 404 else None).response()


def _server_error(_: Request, exc: Exception) -> JSONResponse:
    detail = str(exc).splitlines()[0] if str(exc) else ""
    message = f"the server failed on this request ({type(exc).__name__}: {detail})"
    return APIError(500, message, type="server_error").response()


def install_handlers(app: FastAPI) -> None:
    """Make every error of `app` an OpenAI-style JSON error (a bug too: 500, type server_error)."""
    app.add_exception_handler(APIError, lambda _, exc: exc.response())
    app.add_exception_handler(Exception, _server_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
