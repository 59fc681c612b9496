"""Allow ``python -m assetd``."""

from assetd.cli import entry

entry()
