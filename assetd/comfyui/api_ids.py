"""The id of a location in ComfyUI's asset API: a UUID computed, never stored.

A version-8 UUID (RFC 9562, "custom"): its last 62 bits are the location's id, and
its first 8 bytes (less the version nibble) a digest of the catalog's id and the
moment the catalog first saw the location. The location id is read back from the
bits; the digest, recomputed from the row, rejects a UUID of another catalog, and one
of a location deleted long ago whose id a new location took (SQLite hands out the
highest id + 1 again). Location ids survive moves and changes of content, so the UUID
does too.
"""

from __future__ import annotations

import hashlib
import struct
import uuid

__all__ = ["ID_PATTERN", "location_of", "uuid_of"]

# The canonical hyphenated form, any case (what ComfyUI's routes accept).
ID_PATTERN = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

_ID_BITS = 62  # below the variant's two bits
_VARIANT = 0b10 << _ID_BITS


def uuid_of(catalog_id: str, location_id: int, created_at: float) -> str:
    """The UUID of a location (lower case, hyphenated)."""
    if not 0 <= location_id < 1 << _ID_BITS:
        raise ValueError(f"location id {location_id} does not fit a UUID")
    seen = struct.pack(">d", created_at)
    high = bytearray(hashlib.blake2b(catalog_id.encode() + seen, digest_size=8).digest())
    high[6] = (high[6] & 0x0F) | 0x80  # version 8
    low = _VARIANT | location_id
    return str(uuid.UUID(bytes=bytes(high) + low.to_bytes(8, "big")))


def location_of(text: str) -> int | None:
    """The location id a UUID of :func:`uuid_of` names, or None for one it cannot be;
    compare ``uuid_of`` of the row found with ``text`` before trusting it."""
    try:
        value = uuid.UUID(text)
    except ValueError:
        return None
    if value.version != 8 or value.variant != uuid.RFC_4122:
        return None
    return value.int & ((1 << _ID_BITS) - 1)
