"""assetd: a live, durable catalog of the files under a few folders."""

__version__ = "0.1.0"

__all__ = ["__version__"]
