"""The small predicates and the problem collector that :mod:`config._validate` and
:mod:`config._ready` share."""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from config._reader import Problems, shown

__all__ = ["LABEL", "THUMBPRINT", "Check", "ipv4", "is_fqdn", "is_host", "prefix_length"]

LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
THUMBPRINT = re.compile(r"sha256:[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){31}\Z")  # a certificate's SHA-256 pin


def ipv4(value: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        return None


def is_fqdn(value: str, max_len: int = 253) -> bool:
    return 0 < len(value) <= max_len and all(LABEL.match(label) for label in value.rstrip(".").split("."))


def is_host(value: str) -> bool:
    """An IPv4 address or a DNS name."""
    return ipv4(value) is not None or is_fqdn(value)


@functools.lru_cache(maxsize=64)
def prefix_length(mask: str) -> int | None:
    """The prefix length of a dotted netmask, None if not contiguous (cached: 10,000 nodes share a few)."""
    address = ipv4(mask)
    if address is None:
        return None
    host = ~int(address) & 0xFFFFFFFF
    if host & (host + 1):  # not ones then zeros
        return None
    return 32 - host.bit_length()


class Check:
    """Collects problems. Messages are built only when a rule fails: 10,000 nodes pass quickly."""

    def __init__(self) -> None:
        self.problems: Problems = []

    def add(self, field: str, message: str) -> None:
        self.problems.append((field, message))

    def need(self, ok: bool, field: str, message: str) -> bool:
        if not ok:
            self.add(field, message)
        return ok

    def text(self, value: Any, field: str, what: str, max_len: int = 255) -> None:
        if isinstance(value, str) and not (value.strip() and len(value) <= max_len):
            self.add(field, f"must be {what} of 1..{max_len} characters (got {shown(value)}); set it")

    def choice(self, value: Any, allowed: tuple[str, ...], field: str) -> bool:
        if not isinstance(value, str):
            return False
        return self.need(
            value in allowed, field, f"not an allowed value (got {shown(value)}); use one of: {', '.join(allowed)}"
        )

    def port(self, value: Any, field: str) -> None:
        if isinstance(value, int) and not 1 <= value <= 65535:
            self.add(field, f"not a port number (got {value}); use 1..65535")

    def url(self, value: Any, mode: Any, field: str) -> None:
        if not isinstance(value, str):
            return
        parts = urlsplit(value)
        if mode == "real":
            self.need(
                parts.scheme == "https" and bool(parts.hostname),
                field,
                f"must be an https:// URL when mode is 'real' (got {shown(value)}); write https://<host>/...",
            )
        else:
            self.need(
                parts.scheme in ("http", "https") and bool(parts.hostname),
                field,
                f"must be an http(s):// URL (got {shown(value)}); write https://<host>/...",
            )

    def sha256_pin(self, value: Any, field: str) -> None:
        """A certificate pin (vCenter's thumbprint, the Manager's and the nodes' provisioning fingerprints)."""
        if isinstance(value, str) and not THUMBPRINT.match(value):
            word = "fingerprint" if field.endswith("fingerprint") else "thumbprint"
            self.add(
                field,
                f'bad {word} format (got {shown(value)}); write "sha256:" and 32 hex byte pairs joined by colons, '
                "as `openssl x509 -noout -fingerprint -sha256` prints them",
            )

    def required(self, value: Any, field: str, why: str) -> None:
        self.need(value is not None, field, f"missing (got nothing); {why}")
