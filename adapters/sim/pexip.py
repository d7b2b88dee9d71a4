"""The simulated Management Node API: a stateful twin of :class:`adapters.base.PexipApi`.

It follows ``pexip-api.md`` sections 1-3: URIs ``/api/admin/configuration/v1/<res>/<id>/``,
singletons ``global/1/`` and ``authentication/1/``, a ``management_vm`` whose id is not 1,
FKs as URIs (``role.permissions`` and the ``*_servers`` lists come back embedded on GET),
enum and range checks with field-keyed 400 messages, write-only secrets, PATCH only, the
CSR generator and its completion, a worker POST that returns the bootstrap file (bytes), and a
worker that syncs only once its node's provisioning interface took that very file.

It also models who can log in (:mod:`adapters.sim._pexip_login`: ``authentication/1/`` against
the ``Directory`` it is handed, real or simulated, and the admin password set by the installation
wizard): once a change leaves no identity of the orchestrator able to log in, every later call
raises ``Rejected("locked out: ...")``, so a careless order of authentication steps shows up in
tests as the lock-out it would be.

The state lives in the :class:`~adapters.sim.world.SimWorld` (systems ``pexip:<resource>``);
the lab's aiohttp server serves the same store over HTTP.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from typing import Any

from adapters.base import Created, Directory
from adapters.sim._manager import COUNTERS, PROVISIONED, stored
from adapters.sim._pexip_certs import completed_csr, new_certificate, new_csr, reject_field, with_secrets
from adapters.sim._pexip_filters import matches_all, parse_filters
from adapters.sim._pexip_login import WATCHED, Logins
from adapters.sim._pexip_schema import BASE, RESOURCES, api_error, parse_uri, uri_of, validate
from adapters.sim.world import CONSOLE, VM, Effect, SimWorld, pexip_system
from config.errors import Unreachable
from config.model import Deployment

__all__ = ["SimPexipApi"]

_SYSTEM = "pexip"
# What the gate's answer depends on, but for the Manager's VM: the Manager's wizard (the console, in WATCHED) and the
# logins. Its VM is looked at on each call: a stamp over every VM would change with each node's VM (issue #11: a third
# of the gate's calls went the long way, for VMs it does not read).
_GATE_WATCHED = WATCHED
_ADMIN_CREATE_KINDS = {"certificate_signing_request": "csr_create", "role": "role_create"}
_UNIQUE = {
    "worker_vm": ("name",),
    "role": ("name",),
    "ldap_role": ("name",),
    "system_location": ("name",),
    "snmp_network_management_system": ("name",),
    "role_mapping": ("name",),
}


class SimPexipApi:
    """Twin of :class:`adapters.base.PexipApi` over a :class:`SimWorld`."""

    def __init__(self, world: SimWorld, deployment: Deployment, directory: Directory):
        """``directory`` is the LDAP directory the Management Node's logins ask (real or simulated)."""
        self._world = world
        self._deployment = deployment
        self._manager = deployment.management.name
        self._conferencing = {n.name for n in deployment.conferencing}
        self._node_by_fqdn: dict[str, str] = {}
        for node in deployment.nodes:
            self._node_by_fqdn[node.fqdn.lower()] = node.name
            self._node_by_fqdn[node.address] = node.name  # pki.subject = "address"
            if node.sip_tls_fqdn:
                self._node_by_fqdn[node.sip_tls_fqdn.lower()] = node.name
        self._logins = Logins(world, deployment, directory)
        self._gate_open_at: int | None = None  # the world's stamp of _GATE_WATCHED when the gate last let a call in

    # --- the Protocol ------------------------------------------------------------------------

    async def list_objects(self, resource: str, **filters: Any) -> list[dict[str, Any]]:
        """Every ``resource`` object matching the exact-match (or ``__icontains``,
        ``__startswith``, ``__in``) ``filters``, ordered by id."""
        await self._gate(f"GET {resource}/", change=False)
        spec = self._resource(resource)
        tests = parse_filters(resource, spec, filters)
        system = pexip_system(resource)
        exact = [(f, w) for f, op, w in tests if op == "" and f != "id" and isinstance(w, (str, int, bool))]
        keys = self._world.lookup(system, *exact[0]) if exact else self._world.keys(system)
        found = []
        for key in keys:
            obj = self._world.get(system, key)
            if obj is not None and matches_all(obj, tests):
                found.append(obj)
        found.sort(key=lambda o: o["id"])
        return [self._render(resource, obj) for obj in found]

    async def get(self, uri: str) -> dict[str, Any]:
        """A configuration object, or a resource's ``<resource>/schema/`` (its fields' ``valid_choices``)."""
        await self._gate(f"GET {uri}", change=False)
        if uri.startswith(BASE) and uri.endswith("/schema/"):
            return self._resource(uri[len(BASE) : -len("/schema/")]).schema()  # type: ignore[no-any-return]
        resource, ident = parse_uri(uri)
        return self._render(resource, self._object(resource, ident))

    async def create(self, resource: str, fields: dict[str, Any]) -> Created:
        """POST. Returns the new URI; for ``worker_vm`` the body is the node's bootstrap
        configuration (its deployment file)."""
        await self._gate(f"POST {resource}/", change=True)
        spec = self._resource(resource)
        if spec.singleton or spec.read_only:
            allowed = "GET, PATCH" if spec.singleton else "GET"
            raise api_error(405, f"{resource}: 405 POST is not allowed; allowed: {allowed}")
        # From here to apply() nothing awaits: id allocation and uniqueness stay atomic.
        clean = validate(resource, fields, creating=True, exists=self._exists)
        self._check_unique(resource, clean, None)
        ident = self._next_id(resource)
        if resource == "certificate_signing_request":
            obj = new_csr(clean, ident, lambda ident: self._object("tls_certificate", ident))
        elif resource in ("tls_certificate", "ca_certificate"):
            obj = new_certificate(resource, clean, ident)
        else:
            obj = with_secrets(resource, stored(resource, ident, {}), clean)
        body = self._bootstrap(obj) if resource == "worker_vm" else b""
        if body:  # the Manager remembers which file it issued: only that one makes the node sync
            obj["_bootstrap_sha256"] = hashlib.sha256(body).hexdigest()
        kind = _ADMIN_CREATE_KINDS.get(resource, "api_create")
        await self._commit(
            [(pexip_system(resource), str(ident), obj), (COUNTERS, resource, ident + 1)],
            [Effect(self._node_of(resource, obj), kind, resource)],
        )
        return Created(uri_of(resource, ident), body)

    async def patch(self, uri: str, fields: dict[str, Any]) -> None:
        """PATCH (partial update). ``{"certificate": PEM}`` on a CSR completes it."""
        await self._gate(f"PATCH {uri}", change=True)
        resource, ident = parse_uri(uri)
        spec = self._resource(resource)
        obj = self._object(resource, ident)
        if spec.read_only:
            raise api_error(405, f"{resource}: 405 PATCH is not allowed; allowed: GET")
        if resource == "certificate_signing_request":
            await self._complete_csr(obj, fields)
            return
        clean = validate(resource, fields, creating=False, exists=self._exists)
        self._check_unique(resource, clean, obj["id"])
        new = with_secrets(resource, dict(obj), clean)
        if resource == "authentication":
            _check_authentication(new)
        if resource == "tls_certificate" and ("certificate" in clean or "private_key" in clean):
            new = new_certificate(resource, {**clean, "certificate": new["certificate"]}, obj["id"], base=new)
        await self._commit(
            [(pexip_system(resource), ident, new)], [Effect(self._node_of(resource, new), "api_patch", resource)]
        )

    async def delete(self, uri: str) -> None:
        await self._gate(f"DELETE {uri}", change=True)
        resource, ident = parse_uri(uri)
        spec = self._resource(resource)
        obj = self._object(resource, ident)
        if spec.singleton or spec.read_only:
            allowed = "GET, PATCH" if spec.singleton else "GET"
            raise api_error(
                405,
                f"{resource}: 405 DELETE is not allowed (it would reset every field to its "
                f"default); allowed: {allowed}",
            )
        await self._commit(
            [(pexip_system(resource), ident, None)], [Effect(self._node_of(resource, obj), "api_delete", resource)]
        )

    async def status(self, resource: str, **filters: Any) -> list[dict[str, Any]]:
        """``/status/v1/worker_vm/``: SYNCED once the node's VM runs with its BIOS locked and its
        provisioning interface took the bootstrap file of this worker_vm; ``/status/v1/management_vm/``."""
        await self._gate(f"GET status/{resource}/", change=False)
        configuration_id = self._world.get(COUNTERS, "configuration_id", 0)
        if resource == "management_vm":
            return [{"name": self._manager, "primary": True, "configuration_id": configuration_id}]
        if resource != "worker_vm":
            raise api_error(404, f"status resource {resource!r} is not simulated; use worker_vm or management_vm")
        out = []
        system = pexip_system("worker_vm")
        if set(filters) - {"name"}:
            raise api_error(
                400, f"status/worker_vm: filters {sorted(set(filters) - {'name'})} are not simulated; use name"
            )
        if "name" in filters:
            workers = [(k, self._world.get(system, k)) for k in self._world.lookup(system, "name", filters["name"])]
        else:
            workers = sorted(self._world.items(system), key=lambda kv: kv[1]["id"])
        for _, worker in workers:
            vm = self._world.get(VM, worker["name"])
            if vm is None or vm.get("power_state") != "poweredOn":
                sync = "NOT_CONNECTED"
            elif not vm.get("bios", {}).get("locked_marker"):
                sync = "PENDING"
            elif (self._world.get(PROVISIONED, worker["name"]) or {}).get("sha256") != worker.get("_bootstrap_sha256"):
                sync = "NOT_CONNECTED"  # never got this worker's file: it never contacts the Manager (7.3)
            else:
                sync = "SYNCED"
            out.append(
                {
                    "name": worker["name"],
                    "sync_status": sync,
                    "configuration_id": configuration_id,
                    "deploy_status": "DEPLOYED" if vm is not None else "NOT_DEPLOYED",
                }
            )
        return out

    async def verify_login(self, *, use_client_cert: bool) -> str:
        """Log in as the verifying identity: the LDAP ``ldap.verify_user`` once the source
        includes LDAP (with its client certificate when ``use_client_cert``), else the local
        admin. Returns the roles granted, comma-separated ("local admin" for the local admin,
        who is outside roles).

        Raises:
            Rejected: the login would fail (the reason names the setting to fix).
        """
        await self._gate("login", change=False, login=False)
        auth = await self._logins.current()
        if not use_client_cert and auth["client_certificate"] != "NO":
            raise api_error(
                401,
                f"login refused: authentication.client_certificate is "
                f"{auth['client_certificate']}: a client certificate is required and none was "
                "presented",
            )
        if "LDAP" in auth["sources"]:
            roles, why = await self._logins.ldap_login()  # the directory asked now: a proof is never a cached answer
            if not roles:
                user = self._deployment.ldap.verify_user
                raise api_error(401, f"LDAP login of {user!r} refused: {why}")
            return ",".join(roles)
        if use_client_cert:
            raise api_error(
                401, f"login with a client certificate needs LDAP in authentication.source (now {auth['source']})"
            )
        if auth["local_why"]:
            raise api_error(401, f"local admin login refused: {auth['local_why']}")
        return "local admin"  # outside roles, full access: a Manager has no "Administrator" role

    async def aclose(self) -> None:
        """Nothing to release: the state is in the world."""

    async def __aenter__(self) -> SimPexipApi:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- gate: reachability and login --------------------------------------------------------

    async def _gate(self, what: str, *, change: bool, login: bool = True) -> None:
        await self._world.call(_SYSTEM, what, change=change)
        stamp = self._world.stamp(_GATE_WATCHED)
        if login and stamp == self._gate_open_at and not self._manager_off():
            return  # nothing it depends on changed since it let a call in (issue #11: 66,000 calls per 1000 nodes)
        state = self._world.get(CONSOLE, self._manager) or {}
        if state.get("wizard_state") not in ("installed", "secured"):
            raise Unreachable(
                f"the Management Node {self._manager} does not answer on https: its installation "
                "wizard has not run yet",
                system=_SYSTEM,
            )
        if self._manager_off():
            # A standby (contingency) Manager powered off once built: nothing answers until it is on.
            raise Unreachable(
                f"the Management Node {self._manager} does not answer: its VM is powered off", system=_SYSTEM
            )
        if login:
            auth = await self._logins.current()
            if not auth["identities"]:
                raise api_error(
                    401,
                    f"locked out: no identity of the orchestrator can log in to {self._manager} "
                    f"(authentication source {auth['source']}, client_certificate {auth['client_certificate']}): "
                    f"local admin: {auth['local_why']}; LDAP user {self._deployment.ldap.verify_user!r}: "
                    f"{auth['ldap_why']}. Recover from a fallback deployment; "
                    "change authentication only after verify_login proves the next login",
                )
            if self._logins.cached(auth):
                self._gate_open_at = stamp

    def _manager_off(self) -> bool:
        return (self._world.get(VM, self._manager) or {}).get("power_state") == "poweredOff"

    # --- store helpers --------------------------------------------------------------------

    def _resource(self, resource: str) -> Any:
        spec = RESOURCES.get(resource)
        if spec is None:
            known = ", ".join(sorted(RESOURCES))
            raise api_error(404, f"{resource!r}: 404 not a configuration resource; known: {known}")
        return spec

    def _object(self, resource: str, ident: str) -> dict[str, Any]:
        obj: dict[str, Any] | None = self._world.get(pexip_system(resource), str(ident))
        if obj is None:
            raise api_error(404, f"{uri_of(resource, ident)}: 404 no such object")
        return obj

    def _exists(self, uri: str) -> bool:
        resource, ident = parse_uri(uri)
        return self._world.get(pexip_system(resource), ident) is not None

    def _next_id(self, resource: str) -> int:
        ident = self._world.get(COUNTERS, resource)
        if ident is None:
            ident = 1 + max((o["id"] for _, o in self._world.items(pexip_system(resource))), default=0)
        return int(ident)

    def _check_unique(self, resource: str, clean: dict[str, Any], own_id: int | None) -> None:
        for field in _UNIQUE.get(resource, ()):
            if field in clean:
                for key in self._world.lookup(pexip_system(resource), field, clean[field]):
                    if int(key) != own_id:
                        reject_field(
                            resource,
                            field,
                            f"{resource} with this {field} {clean[field]!r} already exists ({uri_of(resource, key)}).",
                        )

    async def _commit(self, changes: list[tuple[str, str, Any]], effects: list[Effect]) -> None:
        configuration_id = self._world.get(COUNTERS, "configuration_id", 0) + 1
        await self._world.apply([*changes, (COUNTERS, "configuration_id", configuration_id)], effects)

    def _render(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """What GET shows: no internal or write-only field, URIs, embedded FK objects."""
        # A copy in C, then only the keys outside the schema (internal "_" fields, dropped) and the list fields
        # (copied) touched: 4-5x cheaper than a pass over every field (issue #11: 26,000 renders at 1000 nodes).
        # Then the few embedded FK lists replaced where they stand (the keys keep the stored order).
        out = obj.copy()
        public, lists = _shape(resource)
        for name in out.keys() - public:
            if name[:1] == "_":
                del out[name]
            elif type(out[name]) is list:
                out[name] = out[name].copy()
        for name in lists:
            value = out.get(name)
            if type(value) is list:
                out[name] = value.copy()
        for name in _embedded(resource):
            value = out.get(name)
            if value is None:
                continue
            embedded = []
            for uri in value:
                ref, ident = parse_uri(uri)
                target = self._world.get(pexip_system(ref), ident)
                if target is not None:
                    embedded.append(self._render(ref, target))
            out[name] = embedded
        out["resource_uri"] = uri_of(resource, obj["id"])
        return out

    def _node_of(self, resource: str, obj: dict[str, Any]) -> str:
        """The node an effect concerns: a worker or a certificate's subject, else the Manager."""
        if resource == "worker_vm" and obj.get("name") in self._conferencing:
            return str(obj["name"])
        if resource in ("certificate_signing_request", "tls_certificate"):
            return self._node_by_fqdn.get(str(obj.get("subject_name", "")).lower(), self._manager)
        return self._manager

    def _bootstrap(self, worker: dict[str, Any]) -> bytes:
        """The node's bootstrap file: opaque, secret, issued once per POST (a random credential in it)."""
        mgr = self._deployment.management
        keys = ("name", "hostname", "domain", "address", "netmask", "gateway", "node_type", "system_location")
        return json.dumps(
            {
                "management_node": {"address": mgr.address, "fqdn": mgr.fqdn},
                "node_config": {k: worker.get(k) for k in keys},
                "provisioning_secret": secrets.token_hex(16),
            },
            sort_keys=True,
        ).encode()

    # --- certificates ------------------------------------------------------------------------

    async def _complete_csr(self, csr: dict[str, Any], fields: dict[str, Any]) -> None:
        changes, cert = completed_csr(self._world, csr, fields, exists=self._exists, next_id=self._next_id)
        await self._commit(
            changes, [Effect(self._node_of("tls_certificate", cert), "cert_complete", "tls_certificate")]
        )


def _check_authentication(auth: dict[str, Any]) -> None:
    if auth["client_certificate"] != "NO" and "LDAP" not in auth["source"].split("+"):
        reject_field(
            "authentication",
            "client_certificate",
            f"Requires LDAP to be included as an authentication source (source is {auth['source']}).",
        )


@functools.cache
def _shape(resource: str) -> tuple[frozenset[str], tuple[str, ...]]:
    """The fields of ``resource`` GET shows (``id`` too), and those of them that hold lists."""
    fields = RESOURCES[resource].fields
    public = frozenset({"id", *(name for name, f in fields.items() if not f.write_only)})
    lists = tuple(
        name
        for name, f in fields.items()
        if name in public and (f.kind in ("uris", "strs") or isinstance(f.default, list))
    )
    return public, lists


@functools.cache
def _embedded(resource: str) -> tuple[str, ...]:
    """The fields of ``resource`` whose FK objects GET embeds."""
    return tuple(name for name, f in RESOURCES[resource].fields.items() if f.embed)
