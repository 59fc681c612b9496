"""The feed's commands, without I/O: a request's dict in, a result's dict out.

Each command validates its arguments and calls the :class:`~assetd.service.Service`;
failures are the exceptions of :mod:`assetd.exceptions`, which :data:`ERROR_CODES`
turns into the protocol's error codes. Commands block (the service reads and writes
the catalog): the server runs them off its event loop.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from assetd.exceptions import (
    AlreadyRunningError,
    AssetdError,
    AutomaticTagError,
    ConfigError,
    InvalidRequestError,
    NotFoundError,
    SeederBusyError,
    UnknownCommandError,
    UnknownRootError,
)
from assetd.service import Service

if TYPE_CHECKING:
    from assetd.catalog.order import Cursor

__all__ = [
    "COMMANDS",
    "ERROR_CODES",
    "LIST_DEFAULT",
    "LIST_MAX",
    "decode",
    "decode_cursor",
    "encode_cursor",
    "error_code",
    "error_reply",
    "list_args",
    "list_page",
    "message_path",
    "request_id",
    "result_reply",
    "run",
    "subscribe_args",
]

log = logging.getLogger(__name__)

LIST_DEFAULT, LIST_MAX = 100, 1000
SORTS = ("path", "name", "mtime", "size")
_SORT_TYPES: dict[str, type] = {"name": str, "mtime": int, "size": int}

# The first entry the exception is an instance of gives its code; anything that is not
# an AssetdError is a bug, answered ``internal_error`` (and logged with its traceback).
ERROR_CODES: tuple[tuple[type[AssetdError], str], ...] = (
    (UnknownCommandError, "unknown_command"),
    (AutomaticTagError, "automatic_tag"),
    (UnknownRootError, "unknown_root"),
    (InvalidRequestError, "bad_request"),
    (ConfigError, "bad_request"),
    (NotFoundError, "not_found"),
    (SeederBusyError, "scan_running"),
    (AlreadyRunningError, "already_running"),  # VerifyBusyError is one
    (AssetdError, "failed"),
)

Command = Callable[[Service, dict[str, Any]], dict[str, Any]]


def error_code(exc: BaseException) -> str:
    for kind, code in ERROR_CODES:
        if isinstance(exc, kind):
            return code
    return "internal_error"


# -- requests and replies -----------------------------------------------------------


def decode(frame: str | bytes) -> Any:
    """The JSON value in a text frame."""
    if isinstance(frame, bytes):
        raise InvalidRequestError("binary frames are not accepted; send JSON text")
    try:
        return json.loads(frame)
    except ValueError as exc:
        raise InvalidRequestError(f"not JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequestError("JSON nested too deeply") from None


def request_id(message: Any) -> Any:
    """The ``id`` a reply to ``message`` carries (None for what is not an object)."""
    return message.get("id") if isinstance(message, dict) else None


def command_name(message: Any) -> str:
    if not isinstance(message, dict) or not isinstance(message.get("cmd"), str):
        raise InvalidRequestError('a request is a JSON object with a string "cmd"')
    name: str = message["cmd"]
    if name not in COMMANDS and name != "subscribe":
        raise UnknownCommandError(f"no command {name[:64]!r}")
    return name


def run(service: Service, message: dict[str, Any]) -> dict[str, Any]:
    """The result of a request other than ``subscribe`` (which needs the connection)."""
    return COMMANDS[command_name(message)](service, message)


def result_reply(rid: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {"type": "result", "id": rid, "ok": True, "result": result}


def error_reply(rid: Any, exc: BaseException) -> dict[str, Any]:
    code = error_code(exc)
    if code == "internal_error":
        log.error("feed command failed", exc_info=exc)
        message = "the command failed; see the daemon's log"
    else:
        message = str(exc)
    return {"type": "result", "id": rid, "ok": False, "error": {"code": code, "message": message}}


# -- the commands -------------------------------------------------------------------


def subscribe_args(msg: dict[str, Any]) -> tuple[int | None, set[str] | None]:
    """``since`` and the set of ``roots`` (None: all) of a ``subscribe``."""
    since = _arg(msg, "since", int, None)
    roots = _root_names(msg)
    if since is not None and since < 0:
        raise InvalidRequestError("'since' must not be negative")
    return since, set(roots) if roots is not None else None


def status(service: Service, msg: dict[str, Any]) -> dict[str, Any]:
    return service.status()


def seed(service: Service, msg: dict[str, Any]) -> dict[str, Any]:
    roots = _root_names(msg)
    prune_first = _arg(msg, "prune_first", bool, False)
    compute_hashes = _arg(msg, "hash", bool, True)
    wait = _arg(msg, "wait", bool, False)
    if not service.seed(roots, prune_first, compute_hashes):
        raise AlreadyRunningError("a scan is running; try again when it has finished")
    if not wait:
        return {"status": "started"}
    return {"status": "completed", "progress": service.seed_wait()}


def cancel(service: Service, msg: dict[str, Any]) -> dict[str, Any]:
    return {"status": "cancelling" if service.cancel() else "idle"}


def prune(service: Service, msg: dict[str, Any]) -> dict[str, Any]:
    return {"status": "completed", "marked": service.prune()}


def cleanup(service: Service, msg: dict[str, Any]) -> dict[str, Any]:
    dry_run = _arg(msg, "dry_run", bool, False)
    days = _arg(msg, "missing_older_than_days", (int, float), None)
    if days is not None and (isinstance(days, bool) or days < 0):
        raise InvalidRequestError("'missing_older_than_days' must be a number >= 0")
    age = days * 86400.0 if days is not None else None
    return {"deleted": service.cleanup(dry_run, age)}


def verify(service: Service, msg: dict[str, Any]) -> dict[str, Any]:
    roots = _root_names(msg)
    sample = _arg(msg, "sample", int, None)
    if sample is not None and sample < 1:
        raise InvalidRequestError("'sample' must be a positive number of files")
    rate = _arg(msg, "rate_mb_s", (int, float), 50)
    if isinstance(rate, bool) or rate < 0:
        raise InvalidRequestError("'rate_mb_s' must be a number >= 0 (0: no limit)")
    return service.verify(roots, sample, rate * 1_000_000 if rate else None)


def restore(service: Service, msg: dict[str, Any]) -> dict[str, Any]:
    raw = _arg(msg, "paths", list, None)
    if raw is None:
        raise InvalidRequestError("'paths' is required: a list of paths")
    return {"restored": service.restore([_path_value(p) for p in raw])}


def list_(service: Service, msg: dict[str, Any]) -> dict[str, Any]:
    return list_page(service, list_args(msg))


def tag(service: Service, msg: dict[str, Any]) -> dict[str, Any]:
    path = message_path(msg)
    add, remove = _string_list(msg, "add"), _string_list(msg, "remove")
    return {"tags": service.tag(path, add, remove)}


def meta(service: Service, msg: dict[str, Any]) -> dict[str, Any]:
    path = message_path(msg)
    set_ = _arg(msg, "set", dict, {})
    unset = _string_list(msg, "unset")
    return {"metadata": service.meta(path, set_, unset)}


def location(service: Service, msg: dict[str, Any]) -> dict[str, Any]:
    return service.location_detail(message_path(msg))


def check(service: Service, msg: dict[str, Any]) -> dict[str, Any]:
    if "workflow" not in msg:
        raise InvalidRequestError("'workflow' is required: a ComfyUI workflow as a JSON object")
    return {"models": service.check(msg["workflow"])}


COMMANDS: dict[str, Command] = {
    "status": status,
    "seed": seed,
    "cancel": cancel,
    "prune": prune,
    "cleanup": cleanup,
    "verify": verify,
    "restore": restore,
    "list": list_,
    "tag": tag,
    "meta": meta,
    "location": location,
    "check": check,
}


# -- listing (the feed's ``list`` and HTTP's /api/assets) -------------------------


def list_args(msg: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``Service.list_locations`` for a ``list`` request."""
    limit = _arg(msg, "limit", int, LIST_DEFAULT)
    if not 1 <= limit <= LIST_MAX:
        raise InvalidRequestError(f"'limit' must be between 1 and {LIST_MAX}")
    sort = _arg(msg, "sort", str, None) or "path"
    if sort not in SORTS:
        raise InvalidRequestError(f"'sort' must be one of {', '.join(SORTS)}")
    order = _arg(msg, "order", str, None) or "asc"
    if order not in ("asc", "desc"):
        raise InvalidRequestError("'order' must be asc or desc")
    return {
        "root": _arg(msg, "root", str, None) or None,
        "tag": _arg(msg, "tag", str, None) or None,
        "include_missing": _arg(msg, "include_missing", bool, False),
        "missing_only": _arg(msg, "missing_only", bool, False),
        "q": _arg(msg, "q", str, None) or None,
        "sort": sort,
        "order": order,
        "limit": limit,
        "after": decode_cursor(msg.get("after"), sort),
    }


def list_page(service: Service, kwargs: dict[str, Any]) -> dict[str, Any]:
    items, after = service.list_locations(**kwargs)
    return {"items": items, "next": encode_cursor(after, kwargs["sort"])}


# A cursor in path order is the last path (base64url); in another order it is the
# sort's name, the last sort value and id (JSON, base64url), behind a mark that base64
# never starts with, so that a cursor from one order is refused by another.
_SORTED = "~"


def encode_cursor(after: Cursor | None, sort: str = "path") -> str | None:
    if after is None:
        return None
    if isinstance(after, bytes):
        return base64.urlsafe_b64encode(after).decode("ascii")
    body = json.dumps([sort, *after]).encode()
    return _SORTED + base64.urlsafe_b64encode(body).decode("ascii")


def decode_cursor(cursor: Any, sort: str = "path") -> Cursor | None:
    if cursor is None:
        return None
    if not isinstance(cursor, str):
        raise InvalidRequestError("'after' must be a cursor string from a previous list")
    sorted_cursor = cursor.startswith(_SORTED)
    if sorted_cursor != (sort != "path"):
        raise InvalidRequestError("'after' is a cursor of a list in another order")
    try:
        raw = base64.b64decode(
            cursor.lstrip(_SORTED).encode("ascii"), altchars=b"-_", validate=True
        )
        if not sorted_cursor:
            return raw
        name, value, last_id = json.loads(raw)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidRequestError("'after' is not a valid cursor") from exc
    if name != sort or not isinstance(last_id, int) or not isinstance(value, _SORT_TYPES[sort]):
        raise InvalidRequestError("'after' is a cursor of a list in another order")
    return value, last_id


# -- arguments ----------------------------------------------------------------------


def _arg(msg: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    """``msg[name]`` when it is of ``kind`` (a bool is no int), ``default`` when absent."""
    value = msg.get(name, default)
    if value is None:
        return default
    bad_bool = kind is int and isinstance(value, bool)
    if not isinstance(value, kind) or bad_bool:
        expected = (
            kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        )
        raise InvalidRequestError(f"{name!r} must be {expected}")
    return value


def _root_names(msg: dict[str, Any]) -> list[str] | None:
    roots = _arg(msg, "roots", list, None)
    if roots is not None and not all(isinstance(r, str) for r in roots):
        raise InvalidRequestError("'roots' must be a list of root names")
    return roots


def _string_list(msg: dict[str, Any], name: str) -> list[str]:
    value = _arg(msg, name, list, [])
    if not all(isinstance(v, str) for v in value):
        raise InvalidRequestError(f"{name!r} must be a list of strings")
    return value


def _path_value(value: Any) -> bytes:
    if isinstance(value, dict) and isinstance(value.get("path_bytes_b64"), str):
        try:
            path = base64.b64decode(value["path_bytes_b64"], validate=True)
        except (ValueError, binascii.Error) as exc:
            raise InvalidRequestError("path_bytes_b64 is not base64") from exc
    elif isinstance(value, str):
        path = os.fsencode(value)
    else:
        raise InvalidRequestError('a path is a string (or {"path_bytes_b64": …})')
    if not path.startswith(b"/") or b"\0" in path:
        raise InvalidRequestError("paths must be absolute")
    return os.fsencode(os.path.normpath(os.fsdecode(path)))


def message_path(msg: dict[str, Any]) -> bytes:
    if "path_bytes_b64" in msg:
        return _path_value({"path_bytes_b64": msg["path_bytes_b64"]})
    if "path" not in msg:
        raise InvalidRequestError("'path' is required")
    return _path_value(msg["path"])
