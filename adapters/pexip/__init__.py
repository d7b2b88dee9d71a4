"""The real Management Node REST API client (``pexip-api.md``): see :mod:`adapters.pexip.client`."""

from adapters.pexip.client import HttpPexipApi

__all__ = ["HttpPexipApi"]
