"""JSON text for the hot paths: orjson, with the standard library where it refuses."""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["dumps"]


def dumps(value: Any) -> bytes:
    """``value`` as compact JSON in UTF-8.

    orjson is some twenty times faster than ``json`` on a change message, which a pass
    writes twice per file. It refuses what JSON text cannot hold exactly: a path carried
    with ``surrogateescape`` (its raw bytes travel beside it as ``path_bytes_b64``) and
    integers beyond 64 bits in user metadata; ``json`` writes those as it always has.
    """
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value, separators=(",", ":")).encode()
