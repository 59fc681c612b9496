"""What the catalog's writing parts share: the store and the parts they write through."""

from __future__ import annotations

from assetd.catalog.changelog import ChangeLog
from assetd.catalog.locations import Locations
from assetd.catalog.roots import Roots
from assetd.catalog.sql import Store
from assetd.catalog.tags import Tags

__all__ = ["Part"]


class Part:
    """A part of the catalog that writes through the store, the change log, the
    locations, the tags and the roots."""

    def __init__(
        self, store: Store, changes: ChangeLog, locations: Locations, tags: Tags, roots: Roots
    ) -> None:
        self.store = store
        self.changes = changes
        self.locations = locations
        self.tags = tags
        self.roots = roots
