"""TLS certificates: trusted CA chain, CSR, the CA-signed certificate, SIP TLS settings.

Guide: "TLS certificates", "Certificate signing requests (CSRs)", "Global settings"
(SIP TLS certificate verification mode, OCSP). The CSR is made by Pexip's own
generator so the private key never leaves the node; the orchestrator never holds it.
"""

from __future__ import annotations

from typing import Any

from config import rules
from config.errors import Rejected, Unknowable
from config.model import Deployment, NodeSpec
from orchestrator.steps._rest import field_changes, find_one, node_object, singleton, worker_vm
from orchestrator.steps.base import URI, Change, Step, StepContext

__all__ = [
    "TrustedCaChain",
    "CreateCsr",
    "InstallCertificate",
    "SipTlsVerification",
    "SipTlsFqdn",
    "fingerprints",
    "subject_name",
]


def fingerprints(text: str) -> dict[str, str]:
    """The certificates of PEM text by SHA-256 fingerprint of their DER (hex) -> each as PEM.

    Certificates are compared by fingerprint, never by PEM text: the Manager may re-wrap what it
    stores (line length, line endings, whitespace), and the same certificate must not be uploaded
    again (pexip-api.md 7.14). Text that holds no certificate has none.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        certs = x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        return {}
    return {c.fingerprint(hashes.SHA256()).hex(): c.public_bytes(Encoding.PEM).decode() for c in certs}


def subject_name(deployment: Deployment, node: NodeSpec) -> str:
    """The CSR's subject CN (:meth:`config.model.Deployment.subject_name`)."""
    return deployment.subject_name(node)


def _subject(ctx: StepContext) -> str:
    return subject_name(ctx.deployment, ctx.node)


def _identity_of(pem: str) -> dict[str, str]:
    """A certificate's subject and serial (hex), for the record."""
    from orchestrator._cert_check import load_pem_certificates  # the CA's answer was parsed there when checked

    try:
        cert = load_pem_certificates(pem)[0]
    except ValueError:
        return {"subject": "(unparsable certificate)", "serial": ""}
    return {"subject": cert.subject.rfc4514_string(), "serial": format(cert.serial_number, "x")}


def _uri_of(value: Any) -> Any:
    """A foreign key as its URI (GET may embed the object)."""
    return value.get("resource_uri") if isinstance(value, dict) else value


def _subject_of(pem: str) -> str:
    return _identity_of(pem)["subject"]


class TrustedCaChain(Step):
    """Upload the CA chain that signs the server certificates (FIPS mode ignores the default CAs),
    each certificate once: compared by the SHA-256 fingerprint of its DER, not its PEM text."""

    name = "trusted_ca_chain"
    reversible = True

    async def observe(self, ctx: StepContext) -> dict[str, Any]:
        chain: dict[str, str] = {}
        for pem in await ctx.systems.ca.chain():
            found = fingerprints(pem)
            if not found:
                raise Rejected("pki.ca_chain: a block of the CA chain is not a PEM certificate; fix the chain file")
            chain.update(found)
        uploaded = {
            fp
            for obj in await ctx.pexip.list_objects("ca_certificate")
            for fp in fingerprints(obj.get("certificate", ""))
        }
        return {"chain": chain, "uploaded": uploaded}

    def diff(self, ctx: StepContext, observed: dict[str, Any]) -> list[Change]:
        missing = [pem for fp, pem in observed["chain"].items() if fp not in observed["uploaded"]]
        if not missing:
            return []
        # The record names the CA certificates uploaded, not only how many.
        return [
            Change(
                "ca_certificate",
                f"{len(observed['chain']) - len(missing)} of {len(observed['chain'])} uploaded",
                {"uploaded": [_subject_of(b) for b in missing]},
            )
        ]

    async def apply(self, ctx: StepContext, observed: dict[str, Any], changes: list[Change]) -> None:
        for fp, pem in observed["chain"].items():
            if fp not in observed["uploaded"]:
                await ctx.pexip.create("ca_certificate", {"certificate": pem})


async def _installed_certificate(ctx: StepContext) -> dict[str, Any] | None:
    """The node's certificate issued by a trusted CA we uploaded (never the default self-signed one)."""
    api = ctx.pexip
    trusted: set[Any] | None = None
    for cert in await api.list_objects("tls_certificate", subject_name=_subject(ctx)):
        self_signed = cert.get("raw_issuer", cert.get("issuer_name")) == cert.get(
            "raw_subject", cert.get("subject_name")
        )
        if self_signed:
            continue
        # The CA certificates are read only for a candidate: until its certificate is installed a node has
        # none but the self-signed one (issue #11: a Manager request fewer each time it is asked then).
        if trusted is None:
            trusted = {c.get("subject_hash") for c in await api.list_objects("ca_certificate")} - {None}
        if cert.get("issuer_hash") in trusted:
            return cert
    return None


async def _check_key_type(ctx: StepContext) -> None:
    """``pki.key_type`` against what this Manager's version makes (its schema's ``valid_choices``):
    ECDSA P-256 is not offered by every version, and a refused POST would say less."""
    schema = await ctx.pexip.get(f"{URI}certificate_signing_request/schema/")
    offered = ((schema.get("fields") or {}).get("private_key_type") or {}).get("valid_choices")
    if offered and (problem := rules.csr_key_type_problem(ctx.deployment.pki.key_type, offered)) is not None:
        raise Rejected(f"pki.key_type: this Management Node's {problem}; set pki.key_type in the configuration")


class CreateCsr(Step):
    """Pexip's CSR generator: subject = node FQDN (the generator adds it to the SANs); SANs add the
    SIP TLS FQDN; ``pki.dn``'s subject fields; ``pki.key_type`` if this version offers it. Made once.

    Renewal (``orchestrator cert renew NODE``): the CSR is made from the installed certificate
    (its ``tls_certificate``), so it keeps that certificate's private key (the guide: "the CSR uses
    the same private key as the original certificate"); the CA first forgets its earlier answer."""

    name = "create_csr"

    async def observe(self, ctx: StepContext) -> dict[str, Any]:
        csr = await find_one(ctx.pexip, "certificate_signing_request", subject_name=_subject(ctx))
        if csr is not None:
            # A pending CSR is all diff needs (nothing to make): the installed certificate is not looked
            # up, e.g. by the verifying observe right after the CSR is made (issue #11).
            return {"csr": csr}
        observed = {"csr": None, "certificate": await _installed_certificate(ctx)}
        if observed["certificate"] is None:
            await _check_key_type(ctx)
        return observed

    def diff(self, ctx: StepContext, observed: dict[str, Any]) -> list[Change]:
        if observed["csr"] is not None:
            return []
        if observed["certificate"] is None:
            return [Change("certificate_signing_request", None, self.request(ctx))]
        if ctx.renew:
            return [Change("certificate_signing_request", None, self.renewal(ctx, observed["certificate"]))]
        return []

    @classmethod
    def renewal(cls, ctx: StepContext, certificate: dict[str, Any]) -> dict[str, Any]:
        """The renewal CSR's fields: those of a new one, from the installed certificate (its key, no key type)."""
        request = {k: v for k, v in cls.request(ctx).items() if k != "private_key_type"}
        return {**request, "tls_certificate": certificate["resource_uri"]}

    @staticmethod
    def request(ctx: StepContext) -> dict[str, Any]:
        """The CSR's fields as sent to Pexip's generator (what the record says was asked for)."""
        # The SIP TLS FQDN (the node's FQDN unless set) must match an entry of the certificate (guide):
        # a SAN, where the subject is not already that name (always so with pki.subject = "address").
        names = (ctx.node.sip_tls_fqdn, ctx.node.fqdn)
        sans = [n for n in dict.fromkeys(names) if n and n != _subject(ctx)]
        return {
            "subject_name": _subject(ctx),
            "dn": ctx.deployment.pki.dn,
            "additional_subject_alt_names": ",".join(sans),
            "private_key_type": ctx.deployment.pki.key_type,
            "ad_compatible": ctx.deployment.pki.ms_template,
        }

    async def apply(self, ctx: StepContext, observed: dict[str, Any], changes: list[Change]) -> None:
        if observed["certificate"] is None:
            await ctx.pexip.create("certificate_signing_request", self.request(ctx))
            return
        # The CA's answer to the previous CSR is for the same key: it must not pass for the renewal's.
        await ctx.systems.ca.withdraw(ctx.node.name)
        await ctx.pexip.create("certificate_signing_request", self.renewal(ctx, observed["certificate"]))


async def _check_answer(ctx: StepContext, pem: str, csr_pem: str) -> None:
    """The checks of ``orchestrator cert import``, for a certificate the CA returned by itself (the
    inbox, a command CA): nothing reaches the node, and the CSR is not consumed, unless it passes."""
    from orchestrator._cert_check import certificate_problems, load_pem_certificates

    try:
        cert = load_pem_certificates(pem)[0]
        chain = [c for block in await ctx.systems.ca.chain() for c in load_pem_certificates(block)]
    except ValueError as exc:
        raise Rejected(f"{ctx.node.name}: the CA's answer is not a PEM certificate ({exc})", system="ca") from exc
    problems = certificate_problems(
        cert, csr_pem=csr_pem, chain=chain, fqdn=_subject(ctx), min_valid_days=ctx.deployment.pki.min_valid_days
    )
    if problems:
        raise Rejected(
            f"{ctx.node.name}: the certificate the CA returned is refused, nothing was installed: "
            + "; ".join(problems)
            + f"; have the CA sign the node's CSR again (or `orchestrator cert import {ctx.node.name} FILE`)",
            system="ca",
        )


class InstallCertificate(Step):
    """Upload the CA's signed certificate against its CSR and assign it to the node."""

    name = "install_certificate"

    def gate(self, ctx: StepContext, changes: list[Change]) -> str | None:
        # The signed certificate comes from the CA: only needed while it is not uploaded.
        return "certificate" if any(c.field == "tls_certificate" for c in changes) else None

    async def try_open_gate(self, ctx: StepContext, gate: str) -> dict[str, Any] | None:
        """Hand the node's CSR to the CA (idempotent) and take its certificate when ready."""
        csr = await find_one(ctx.pexip, "certificate_signing_request", subject_name=_subject(ctx))
        if csr is None:
            return None
        # Journaled with the wait: `orchestrator cert import` checks a certificate against this CSR.
        ctx.scratch["gate_record"] = {"csr": csr["csr"]}
        await ctx.systems.ca.submit(ctx.node.name, csr["csr"])
        pem = await ctx.systems.ca.collect(ctx.node.name)
        if not pem:
            return None
        installed = await _installed_certificate(ctx)
        if installed is not None and set(fingerprints(pem)) & set(fingerprints(installed.get("certificate", ""))):
            return None  # a renewal: the certificate it replaces is no answer to it
        await _check_answer(ctx, pem, csr["csr"])
        return {"certificate": pem}

    async def observe(self, ctx: StepContext) -> dict[str, Any]:
        certificate = await _installed_certificate(ctx)
        renewal = None
        if certificate is not None:
            csr = await find_one(ctx.pexip, "certificate_signing_request", subject_name=_subject(ctx))
            if csr is not None and _uri_of(csr.get("tls_certificate")) == certificate["resource_uri"]:
                renewal = csr
        return {"certificate": certificate, "renewal": renewal, "node": await node_object(ctx.pexip, ctx.node)}

    def diff(self, ctx: StepContext, observed: dict[str, Any]) -> list[Change]:
        cert = observed["certificate"]
        if observed.get("renewal") is not None:
            # A renewal CSR from the installed certificate waits for the CA: completing it replaces the
            # certificate (same subject and key) and keeps its node assignments (the guide).
            pem = (ctx.gate_payload or {}).get("certificate")
            wanted = _identity_of(pem) if pem else f"CA-signed renewal for {_subject(ctx)}"
            return [Change("tls_certificate", _identity_of(cert.get("certificate", "")), wanted)]
        if cert is None:
            pem = (ctx.gate_payload or {}).get("certificate")
            # Once the gate has opened the record names the certificate installed (subject, serial).
            wanted = _identity_of(pem) if pem else f"CA-signed for {_subject(ctx)}"
            return [Change("tls_certificate", None, wanted), Change("node.tls_certificate", None, "assigned")]
        assigned = observed["node"].get("tls_certificate")
        if isinstance(assigned, dict):
            assigned = assigned.get("resource_uri")
        return (
            [] if assigned == cert["resource_uri"] else [Change("node.tls_certificate", assigned, cert["resource_uri"])]
        )

    async def apply(self, ctx: StepContext, observed: dict[str, Any], changes: list[Change]) -> None:
        api = ctx.pexip
        cert = observed["certificate"]
        if observed.get("renewal") is not None:
            pem = (ctx.gate_payload or {}).get("certificate")
            if not pem:
                raise Rejected(
                    f"{ctx.node.name}: no signed certificate for the renewal CSR; import it with "
                    f"`orchestrator cert import {ctx.node.name} FILE`"
                )
            await api.patch(observed["renewal"]["resource_uri"], {"certificate": pem})
            cert = await _installed_certificate(ctx)
            if cert is None or not set(fingerprints(pem)) & set(fingerprints(cert.get("certificate", ""))):
                raise Rejected(f"{ctx.node.name}: the renewed certificate was accepted but is not the one installed")
        elif cert is None:
            pem = (ctx.gate_payload or {}).get("certificate")
            if not pem:
                raise Rejected(
                    f"{ctx.node.name}: no signed certificate; import it with `orchestrator cert import "
                    f"{ctx.node.name} FILE`"
                )
            csr = await find_one(api, "certificate_signing_request", subject_name=_subject(ctx))
            if csr is None:
                raise Rejected(
                    f"{ctx.node.name}: the CSR for {_subject(ctx)} is gone and no certificate is installed; "
                    f"run `orchestrator resume {ctx.node.name} --from-step create_csr`"
                )
            # Completing through the CSR links the certificate with the key that never left the node.
            await api.patch(csr["resource_uri"], {"certificate": pem})
            cert = await _installed_certificate(ctx)
            if cert is None:
                raise Rejected(
                    f"{ctx.node.name}: the certificate was accepted but no TLS certificate for {_subject(ctx)} appeared"
                )
        await api.patch(observed["node"]["resource_uri"], {"tls_certificate": cert["resource_uri"]})


class SipTlsVerification(Step):
    """Global: SIP TLS certificate verification On; OCSP Override with the responder URL."""

    name = "sip_tls_verification"
    reversible = True

    def wanted(self, ctx: StepContext) -> dict[str, Any]:
        g = ctx.policy.global_settings
        return {
            "sip_tls_cert_verify_mode": g.sip_tls_cert_verify_mode,
            "ocsp_state": g.ocsp_state,
            "ocsp_responder_url": ctx.deployment.global_settings.ocsp_responder_url,
        }

    intent = wanted  # the plan shows these values before the step can observe

    async def observe(self, ctx: StepContext) -> dict[str, Any]:
        return await singleton(ctx.pexip, "global")

    def diff(self, ctx: StepContext, observed: dict[str, Any]) -> list[Change]:
        return field_changes("global", observed, self.wanted(ctx))

    async def apply(self, ctx: StepContext, observed: Any, changes: list[Change]) -> None:
        await ctx.pexip.patch(f"{URI}global/1/", {c.field.split(".", 1)[1]: c.wanted for c in changes})


class SipTlsFqdn(Step):
    """Conferencing Node: the SIP TLS FQDN matching an entry of its certificate."""

    name = "sip_tls_fqdn"
    reversible = True

    def intent(self, ctx: StepContext) -> dict[str, Any]:
        return {"worker_vm.alternative_fqdn": ctx.node.sip_tls_fqdn or ctx.node.fqdn}

    async def observe(self, ctx: StepContext) -> dict[str, Any]:
        worker = await worker_vm(ctx.pexip, ctx.node.name)
        if worker is None:
            raise (
                Unknowable(f"worker_vm {ctx.node.name} does not exist yet")
                if ctx.dry_run
                else Rejected(f"worker_vm {ctx.node.name} does not exist on the Management Node")
            )
        return worker

    def diff(self, ctx: StepContext, observed: dict[str, Any]) -> list[Change]:
        return field_changes("worker_vm", observed, {"alternative_fqdn": ctx.node.sip_tls_fqdn or ctx.node.fqdn})

    async def apply(self, ctx: StepContext, observed: dict[str, Any], changes: list[Change]) -> None:
        await ctx.pexip.patch(observed["resource_uri"], {"alternative_fqdn": ctx.node.sip_tls_fqdn or ctx.node.fqdn})
