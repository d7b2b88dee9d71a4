"""Application configuration in the Administrator interface (management API).

Guide: "Global settings", "Securing network services" (DNS, NTP, syslog, SNMP),
"Location DSCP tags and MTU", and the Conferencing Node's SNMPv3.
"""

from __future__ import annotations

from typing import Any

from orchestrator.steps._rest import (
    ensure_object,
    field_changes,
    find_one,
    load_schema,
    management_vm,
    node_object,
    normalise,
    settable,
    singleton,
)
from orchestrator.steps.base import URI, Change, Step, StepContext

__all__ = ["GlobalSettings", "NetworkServices", "Snmpv3", "LocationQos", "CERTIFICATE_SETTINGS"]

# Set with the certificates (milestone certified), not before: turning SIP TLS verification
# on before the CA-signed certificates are in place would break the nodes' own TLS.
CERTIFICATE_SETTINGS = ("sip_tls_cert_verify_mode", "ocsp_state", "ocsp_responder_url")


class GlobalSettings(Step):
    """Chat, outbound calls, Connect apps and SSH off; DSCP 16; HTTP access off; banner; timeout 10."""

    name = "global_settings"
    reversible = True

    def wanted(self, ctx: StepContext) -> dict[str, Any]:
        g = ctx.deployment.global_settings
        wanted = {k: v for k, v in ctx.policy.global_settings.settings().items() if k not in CERTIFICATE_SETTINGS}
        wanted.update(
            logon_banner=g.login_banner,
            enable_sip=g.enable_sip,
            enable_h323=g.enable_h323,
            enable_webrtc=g.enable_webrtc,
            enable_rtmp=g.enable_rtmp,
        )
        return wanted

    intent = wanted  # the plan shows these values before the step can observe

    async def observe(self, ctx: StepContext) -> dict[str, Any]:
        await load_schema(ctx, "global")
        return await singleton(ctx.pexip, "global")

    def diff(self, ctx: StepContext, observed: dict[str, Any]) -> list[Change]:
        return field_changes("global", observed, settable(ctx, "global", "global", self.wanted(ctx)))

    async def apply(self, ctx: StepContext, observed: Any, changes: list[Change]) -> None:
        # PATCH only the keys we own and that differ (a full object would reset the rest).
        fields = {c.field.split(".", 1)[1]: c.wanted for c in changes}
        await ctx.pexip.patch(f"{URI}global/1/", fields)


class NetworkServices(Step):
    """At least two DNS servers, two keyed NTP servers and one syslog server, bound to the Manager."""

    name = "network_services"
    reversible = True

    def intent(self, ctx: StepContext) -> dict[str, Any]:
        net = ctx.deployment.network
        return {
            "dns_server": list(net.dns_servers),
            "ntp_server": {s.address: {"key_id": s.key_id} for s in net.ntp_servers},
            "syslog_server": {s.address: {"port": s.port, "transport": s.transport} for s in net.syslog_servers},
            "management_vm": "bound to every configured server",
        }

    async def observe(self, ctx: StepContext) -> dict[str, Any]:
        api = ctx.pexip
        net = ctx.deployment.network
        return {
            "dns": {a: await find_one(api, "dns_server", address=a) for a in net.dns_servers},
            "ntp": {s.address: await find_one(api, "ntp_server", address=s.address) for s in net.ntp_servers},
            "syslog": {s.address: await find_one(api, "syslog_server", address=s.address) for s in net.syslog_servers},
            "manager": await management_vm(api),
        }

    def diff(self, ctx: StepContext, observed: dict[str, Any]) -> list[Change]:
        net = ctx.deployment.network
        changes: list[Change] = []
        for a, obj in observed["dns"].items():
            if obj is None:
                changes.append(Change(f"dns_server[{a}]", None, "present"))
        for s in net.ntp_servers:
            obj = observed["ntp"][s.address]
            changes += (
                [Change(f"ntp_server[{s.address}]", None, f"present, key_id {s.key_id}")]
                if obj is None
                else field_changes(f"ntp_server[{s.address}]", obj, {"key_id": s.key_id})
            )
        for syslog in net.syslog_servers:
            obj = observed["syslog"][syslog.address]
            wanted = {"port": syslog.port, "transport": syslog.transport}
            changes += (
                [Change(f"syslog_server[{syslog.address}]", None, wanted)]
                if obj is None
                else field_changes(f"syslog_server[{syslog.address}]", obj, wanted)
            )
        # Bindings on the Management Node: only checkable once the objects exist.
        uris = {
            kind: [o["resource_uri"] for o in observed[key].values() if o is not None]
            for kind, key in (("dns_servers", "dns"), ("ntp_servers", "ntp"), ("syslog_servers", "syslog"))
        }
        manager = observed["manager"]
        for kind, wanted_uris in uris.items():
            have = set(normalise(manager.get(kind) or []))
            if not set(wanted_uris) <= have or len(wanted_uris) < len(observed[kind.split("_")[0]]):
                changes.append(Change(f"management_vm.{kind}", sorted(have), "bound to every configured server"))
        return changes

    async def apply(self, ctx: StepContext, observed: dict[str, Any], changes: list[Change]) -> None:
        api = ctx.pexip
        net = ctx.deployment.network
        dns = [
            await ensure_object(api, "dns_server", {"address": a}, {"description": "secure-mode"})
            for a in net.dns_servers
        ]
        ntp = [
            await ensure_object(
                api,
                "ntp_server",
                {"address": s.address},
                {"key_id": s.key_id},
                # The key is write-only (stored as a hash): sent on create/change, never diffed.
                write_only={"key": s.key.reveal()},
            )
            for s in net.ntp_servers
        ]
        syslog = [
            await ensure_object(
                api, "syslog_server", {"address": s.address}, {"port": s.port, "transport": s.transport}
            )
            for s in net.syslog_servers
        ]
        manager = observed["manager"]
        bind = {}
        for kind, uris in (("dns_servers", dns), ("ntp_servers", ntp), ("syslog_servers", syslog)):
            have = set(normalise(manager.get(kind) or []))
            if not set(uris) <= have:
                bind[kind] = sorted(have | set(uris))
        if bind:
            await api.patch(manager["resource_uri"], bind)


class Snmpv3(Step):
    """SNMPv3 read-only (SHA1 auth, AES-128 privacy) with a community other than "public"."""

    name = "snmpv3"
    reversible = True

    def wanted(self, ctx: StepContext) -> dict[str, Any]:
        snmp = ctx.deployment.snmp
        return {
            "snmp_mode": ctx.policy.snmp.snmp_mode,
            "snmp_username": snmp.username,
            "snmp_community": snmp.community,
        }

    intent = wanted  # the plan shows these values before the step can observe

    async def observe(self, ctx: StepContext) -> dict[str, Any]:
        return await node_object(ctx.pexip, ctx.node)

    def diff(self, ctx: StepContext, observed: dict[str, Any]) -> list[Change]:
        return field_changes("snmp", observed, self.wanted(ctx))

    async def apply(self, ctx: StepContext, observed: dict[str, Any], changes: list[Change]) -> None:
        snmp = ctx.deployment.snmp
        fields = {
            **self.wanted(ctx),
            # Write-only: the API never returns them, so they go with every change.
            "snmp_authentication_password": snmp.authentication_password.reveal(),
            "snmp_privacy_password": snmp.privacy_password.reveal(),
        }
        await ctx.pexip.patch(observed["resource_uri"], fields)


class LocationQos(Step):
    """Every location: DSCP media 51, signalling 40, MTU 1400, and the network services bound."""

    name = "location_qos"
    reversible = True

    async def observe(self, ctx: StepContext) -> dict[str, Any]:
        api = ctx.pexip
        net = ctx.deployment.network
        return {
            "locations": {name: await find_one(api, "system_location", name=name) for name in net.locations},
            "dns": [await find_one(api, "dns_server", address=a) for a in net.dns_servers],
            "ntp": [await find_one(api, "ntp_server", address=s.address) for s in net.ntp_servers],
            "syslog": [await find_one(api, "syslog_server", address=s.address) for s in net.syslog_servers],
        }

    def wanted(self, ctx: StepContext, observed: dict[str, Any]) -> dict[str, Any]:
        uris = {k: [o["resource_uri"] for o in observed[k] if o] for k in ("dns", "ntp", "syslog")}
        return {
            **ctx.policy.location.settings(),
            "dns_servers": uris["dns"],
            "ntp_servers": uris["ntp"],
            "syslog_servers": uris["syslog"],
        }

    def diff(self, ctx: StepContext, observed: dict[str, Any]) -> list[Change]:
        wanted = self.wanted(ctx, observed)
        changes: list[Change] = []
        for name, obj in observed["locations"].items():
            if obj is None:
                changes.append(Change(f"system_location[{name}]", None, ctx.policy.location.settings()))
            else:
                changes += field_changes(f"system_location[{name}]", obj, wanted)
        return changes

    async def apply(self, ctx: StepContext, observed: dict[str, Any], changes: list[Change]) -> None:
        wanted = self.wanted(ctx, observed)
        for name in ctx.deployment.network.locations:
            await ensure_object(ctx.pexip, "system_location", {"name": name}, wanted)
