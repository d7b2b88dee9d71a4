"""The live compliance audit: one result per control of the guide and node, read through the steps' observe code.

``config/controls.toml`` maps each control to the steps that prove it; :func:`audit` observes the
deployment's systems (vCenter, the management API, LDAP, the CA) read-only, renders the report
(text, JSON or self-contained HTML) and journals its SHA-256 as an ``audit_report`` event.
"""

from orchestrator.audit._check import FAILING, STATUSES, AuditReport, ControlResult, check
from orchestrator.audit._render import FORMATS, render
from orchestrator.audit._run import AuditOutcome, audit

__all__ = [
    "FAILING",
    "FORMATS",
    "STATUSES",
    "AuditOutcome",
    "AuditReport",
    "ControlResult",
    "audit",
    "check",
    "render",
]
