"""The guide is a floor: what no policy file may weaken, and what a deployment changed within it.

The floor is data, the packaged ``config/secure-mode-policy.toml`` itself: every key a
section does not list in ``customizable`` holds the guide's value, quoted in the ``guide:``
comment above it. A deployment's policy (its ``[deployment] policy`` file and its ``[policy]``
table) may differ from the packaged one only in customizable keys; any other difference is
refused at load, naming the value and the guide's words. A customizable key the guide
quotes (a recommended DSCP value, the MTU, a port) may differ, and each such deviation is
listed on the loaded deployment (``Deployment.policy_deviations``) so a run journals it.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

from config._policy import POLICY_PATH, read_policy
from config._reader import Problems, shown
from config.policy import Policy

__all__ = ["AT_LEAST", "Deviation", "guide_words", "floor_problems", "policy_deviations", "packaged_policy"]

# (field, the guide's value, the value used, the guide's words)
Deviation = tuple[str, object, object, str]

# Minimum counts: a policy may ask for more than the guide, never for fewer.
AT_LEAST = frozenset(
    {
        "network_services.min_dns_servers",
        "network_services.min_ntp_servers",
        "network_services.min_syslog_servers",
    }
)

_SECTION = re.compile(r"\[(\w+)\]\s*$")
_KEY = re.compile(r"(\w+)\s*=")
_QUOTE = re.compile(r"#\s*(guide|orchestrator):\s*(.*)")


@functools.cache
def packaged_policy() -> Policy:
    """The packaged policy: the floor's values."""
    policy, problems = read_policy(None, None)
    assert policy is not None, f"the packaged secure-mode-policy.toml is invalid: {problems}"
    return policy


@functools.cache
def guide_words() -> dict[str, str]:
    """``"section.key"`` -> the ``guide:`` quotes (or ``orchestrator:`` notes) above the key in the packaged file."""
    words: dict[str, str] = {}
    section, quotes = "", list[str]()
    for line in POLICY_PATH.read_text().splitlines():
        if m := _SECTION.match(line):
            section, quotes = m.group(1), []
        elif m := _QUOTE.match(line):
            quote = m.group(2).strip()
            quote = quote[1:-1] if len(quote) > 1 and quote[0] == quote[-1] == '"' else quote
            quotes.append(quote if m.group(1) == "guide" else f"(orchestrator) {quote}")
        elif line.startswith("#"):
            continue  # a note in parentheses: not the guide's words
        elif m := _KEY.match(line):
            words[f"{section}.{m.group(1)}"] = " / ".join(quotes)
            quotes = []
        elif not line.startswith((" ", "]")):
            quotes = []
    return words


def _values(policy: Policy) -> dict[str, tuple[tuple[str, ...], dict[str, Any]]]:
    """section -> (its customizable keys, its values without ``customizable``)."""
    out = {}
    for f in dataclasses.fields(policy):
        section = getattr(policy, f.name)
        values = {g.name: getattr(section, g.name) for g in dataclasses.fields(section)}
        out[f.name] = (tuple(values.pop("customizable", ())), values)
    return out


def floor_problems(policy: Policy, *, where: str, overridden: frozenset[str] = frozenset()) -> Problems:
    """Every value of ``policy`` that weakens the guide's floor (the packaged policy's fixed values).

    Args:
        where: the policy file's path, for the messages.
        overridden: ``"section.key"`` set by the deployment's ``[policy]`` table: such a field
            is named ``policy.section.key``, the others ``section.key`` (of the policy file).
    """
    problems: Problems = []
    words = guide_words()
    used = _values(policy)
    for section, (customizable, floor) in _values(packaged_policy()).items():
        for key, guide_value in floor.items():
            dotted = f"{section}.{key}"
            value = used[section][1][key]
            if key in customizable or value == guide_value:
                continue
            if dotted in AT_LEAST and isinstance(value, int) and value > guide_value:
                continue  # stricter than the guide
            may = f"only {', '.join(customizable)} may differ" if customizable else "nothing may differ"
            field = f"policy.{dotted}" if dotted in overridden else dotted
            problems.append(
                (
                    field,
                    (
                        f"weakens the secure-mode guide, which no policy file may do (got {shown(value)} from {where}, "
                        f'the guide\'s value is {shown(guide_value)}); the guide: "{words.get(dotted, "")}"; '
                        f"restore {shown(guide_value)}: in [{section}] {may}"
                    ),
                )
            )
    return problems


def policy_deviations(policy: Policy) -> tuple[Deviation, ...]:
    """The customizable values the guide quotes (recommended or marked *) that ``policy`` changed."""
    words = guide_words()
    used = _values(policy)
    found: list[Deviation] = []
    for section, (customizable, guide) in _values(packaged_policy()).items():
        for key in customizable:
            dotted = f"{section}.{key}"
            quote = words.get(dotted, "")
            if quote and not quote.startswith("(orchestrator)") and used[section][1][key] != guide[key]:
                found.append((dotted, guide[key], used[section][1][key], quote))
    return tuple(found)
