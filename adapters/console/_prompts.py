"""Which answer a console prompt asks for, read from the prompt's TEXT (never from its position).

A prompt is normalised (defaults in brackets or parentheses dropped, lower case, runs of other
characters turned into ``_``) and matched against the names the client knows. The security
wizard's names are the policy's keys (``policy.security_wizard``): a key matches a prompt whose
normalised text is the key or starts with it ("Drop incoming packets to closed ports rather than
reject (YES)" is ``drop_incoming_packets_to_closed_ports``). Anything else is an unexpected prompt.
"""

from __future__ import annotations

import re

__all__ = ["normalise", "installation_key", "security_key", "START_PASSWORD", "WEB_PASSWORD"]

START_PASSWORD = "start_password"  # "Enter the admin user password to permit the ... wizard to start"
WEB_PASSWORD = "web_admin_password"

_BRACKETS = re.compile(r"\[[^\]]*\]|\([^)]*\)")
_OTHER = re.compile(r"[^a-z0-9]+")

# Normalised installation wizard prompt -> the answer it takes (see the server's INSTALLATION_PROMPTS).
_INSTALLATION = {
    "ip_address": "address",
    "ipv4_address": "address",
    "network_mask": "netmask",
    "gateway": "gateway",
    "default_gateway": "gateway",
    "hostname": "hostname",
    "domain_suffix": "domain",
    "dns_servers": "dns_servers",
    "ntp_servers": "ntp_servers",
    "web_administration_username": "admin_user",
    "web_administration_password": WEB_PASSWORD,
    "enable_incident_reporting": "enable_incident_reporting",
    "contact_email_address": "contact_email_address",
    "send_deployment_and_usage_statistics_to_pexip": "send_deployment_and_usage_statistics",
}


def normalise(prompt: str) -> str:
    """ "SIP UDP listen port (5060): " -> "sip_udp_listen_port"."""
    text = _BRACKETS.sub(" ", prompt.strip().rstrip(":").strip())
    return _OTHER.sub("_", text.lower()).strip("_")


def _start(name: str) -> bool:
    return name.startswith("enter_the_admin_user_password_to_permit_the_") and name.endswith("_to_start")


def installation_key(prompt: str) -> str | None:
    """The answer the installation wizard's ``prompt`` asks for, or None when unknown."""
    name = normalise(prompt)
    if _start(name) and "installation_wizard" in name:
        return START_PASSWORD
    return _INSTALLATION.get(name)


def security_key(prompt: str, keys: list[str]) -> str | None:
    """The policy key among ``keys`` the security wizard's ``prompt`` asks for, or None."""
    name = normalise(prompt)
    if _start(name) and "security_wizard" in name:
        return START_PASSWORD
    matches = [k for k in keys if name == k or name.startswith(k + "_")]
    return max(matches, key=len) if matches else None
