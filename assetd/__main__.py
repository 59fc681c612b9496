"""Allow ``python -m assetd``."""

from assetd.cli import main

raise SystemExit(main())
