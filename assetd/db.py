"""The catalog's names as earlier code and scripts import them: see :mod:`assetd.catalog`."""

from __future__ import annotations

from assetd.catalog import CHANGE_CHANNEL, Catalog, Change, ChangeListener
from assetd.catalog.engine import open_database, shown_url
from assetd.catalog.sql import CHUNK, INSERT_PARAMS, chunks, insert_statements

__all__ = [
    "CHANGE_CHANNEL",
    "CHUNK",
    "INSERT_PARAMS",
    "Catalog",
    "Change",
    "ChangeListener",
    "chunks",
    "insert_statements",
    "open_database",
    "shown_url",
]
