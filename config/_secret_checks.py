"""Whether a deployment's secrets can be read now: for ``load_deployment(check_secrets=True)``.

Values are read to check them (and so registered with the redactor) but never shown.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from config._reader import Problems
from config.model import Deployment, NodeSpec
from config.secrets import Secret

__all__ = ["unavailable_secrets"]


def _secrets_with_paths(obj: Any, path: str) -> list[tuple[str, Secret]]:
    if isinstance(obj, Secret):
        return [(path, obj)]
    if isinstance(obj, (list, tuple)):
        return [found for i, x in enumerate(obj) for found in _secrets_with_paths(x, f"{path}[{i}]")]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, (NodeSpec, type)):  # nodes hold no secrets
        return [
            found
            for f in dataclasses.fields(obj)
            for found in _secrets_with_paths(getattr(obj, f.name), f"{path}.{f.name}" if path else f.name)
        ]
    return []


def _ordinary_text(obj: Any, path: str, out: list[tuple[str, str]]) -> None:
    """Every string of the deployment that is not a secret, with its field: what the record keeps."""
    if isinstance(obj, str):
        if not path.endswith("_sha256"):  # hex digests, not text anyone reads
            out.append((path, obj))
    elif isinstance(obj, (list, tuple)):
        for i, x in enumerate(obj):
            _ordinary_text(x, f"{path}[{i}]", out)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            _ordinary_text(getattr(obj, f.name), f"{path}.{f.name}" if path else f.name, out)


def _also_ordinary_text(value: str, text: list[tuple[str, str]]) -> str | None:
    """The first field whose text holds ``value``: redacting it there would erase that text from the record."""
    return next((field for field, words in text if value in words), None)


def unavailable_secrets(deployment: Deployment) -> Problems:
    """A problem for each secret that cannot be read now, or whose value is unusable: too short or long,
    or also part of the configuration's ordinary text (a node name, the banner...).

    Values are read to check them (and so registered with the redactor) but never shown.
    """
    problems: Problems = []
    text: list[tuple[str, str]] = []
    _ordinary_text(deployment, "", text)
    for field, secret in _secrets_with_paths(deployment, ""):
        missing = secret.available()
        if missing is not None:
            problems.append((field, f"secret cannot be read (got {secret.ref}: {missing}); set it before running"))
            continue
        try:
            value = secret.reveal()
        except (OSError, KeyError, UnicodeDecodeError) as exc:
            problems.append(
                (field, f"secret cannot be read (got {secret.ref}: {type(exc).__name__}); make it readable")
            )
            continue
        size = len(value)
        # Shorter values cannot be scrubbed from logs safely (config.secrets.Redactor).
        low, high = (8, 100) if field.startswith("snmp.") else (4, None)
        if size < low or (high is not None and size > high):
            allowed = f"{low}..{high}" if high else f"at least {low}"
            problems.append(
                (field, f"secret {secret.ref} has an unusable length (got {size} characters); use {allowed} characters")
            )
        elif (where := _also_ordinary_text(value, text)) is not None:
            # The redactor would replace that text everywhere it is recorded: refuse, never erase the record.
            problems.append(
                (
                    field,
                    f"secret {secret.ref}'s value also appears in the configuration's ordinary text "
                    f"(got it inside {where}, value not shown); choose a secret that is not part of "
                    "any name, address or text of the configuration",
                )
            )
    return problems
