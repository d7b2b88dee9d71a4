"""The journal's signing key, checked with the rest of the configuration: every problem in one report.

``[journal] signing_key`` signs the journal's checkpoints. When any system is real it is required,
must be an Ed25519 PKCS#8 PEM private key, must not sit in the journal's directory (whoever can
write the journal could then re-sign a rewritten history) and must not be readable by group or
others. ``load_deployment(check_secrets=True)`` runs these checks beside every other, against the
journal the configuration names; the session runs them again against the journal actually opened
(``--journal`` or ``$ORCHESTRATOR_JOURNAL`` may name another one), before anything is created.
"""

from __future__ import annotations

from pathlib import Path

from config import rules
from config._reader import Problems
from config.model import Deployment
from config.secrets import Secret

__all__ = ["signing_key_problems", "signing_key_file", "configured_journal", "any_real_system"]

FIELD = "journal.signing_key"


def any_real_system(d: Deployment) -> bool:
    """Whether any system is in real mode (a section the reader refused counts as not real)."""
    modes = [getattr(getattr(d, s, None), "mode", None) for s in ("vcenter", "pexip_api", "console", "ldap")]
    return rules.any_real([m for m in modes if isinstance(m, str)])


def configured_journal(d: Deployment) -> Path:
    """The journal the configuration names, resolved against the configuration file's directory."""
    path = Path(d.journal.path)
    return path if path.is_absolute() or not d.source else Path(d.source).parent / path


def signing_key_file(secret: Secret, d: Deployment) -> Path | None:
    """The file of a ``file:`` secret reference (relative to the configuration's directory); None for others."""
    kind, _, name = secret.ref.partition(":")
    if kind != "file":
        return None
    path = Path(name)
    return path if path.is_absolute() or not d.source else Path(d.source).parent / path


def _key_content_problem(secret: Secret) -> str | None:
    """Why the key's value is not an Ed25519 private key; None when it is, or when it cannot be read
    (an unreadable secret is reported once, by the secrets check)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        data = secret.reveal()
    except (OSError, KeyError):
        return None
    try:
        key = serialization.load_pem_private_key(data.encode(), None)
    except (ValueError, TypeError) as exc:
        return (
            f"not a readable unencrypted PEM private key ({type(exc).__name__}); give an Ed25519 PKCS#8 PEM "
            "private key (`openssl genpkey -algorithm ed25519`)"
        )
    if not isinstance(key, Ed25519PrivateKey):
        return (
            f"an Ed25519 key is needed (got {type(key).__name__.lstrip('_')}); make one with "
            "`openssl genpkey -algorithm ed25519`"
        )
    return None


def _file_problem(path: Path, journal: Path) -> str | None:
    """Real mode: the key file outside the journal's directory and private to its owner."""
    where = journal.resolve().parent
    if path.resolve().is_relative_to(where):
        return (
            f"the signing key {path} is in the journal's directory {where}: whoever can write the journal "
            "could also re-sign a rewritten history; move the key to a private directory elsewhere "
            "(chmod 700) and point journal.signing_key at it"
        )
    try:
        mode = path.stat().st_mode & 0o777
    except OSError as exc:
        return f"the signing key {path} cannot be read ({exc.strerror})"
    if mode & 0o077:
        return f"the signing key {path} is readable by group or others (mode {mode:04o}); run `chmod 600 {path}`"
    return None


def signing_key_problems(d: Deployment, journal: Path | None = None, *, content: bool = True) -> Problems:
    """Every problem of ``journal.signing_key`` for the journal ``journal`` (default: the one configured).

    ``content``: also read the key and check it is an Ed25519 private key (needs the secret here).
    """
    if getattr(d, "journal", None) is None:  # a section the reader refused: already reported
        return []
    secret = d.journal.signing_key
    if secret is None:
        return [(FIELD, rules.SIGNING_KEY_REQUIRED)] if any_real_system(d) else []
    problems: Problems = []
    path = signing_key_file(secret, d)
    if path is not None and any_real_system(d):
        if (message := _file_problem(path, journal or configured_journal(d))) is not None:
            problems.append((FIELD, message))
    if content and not problems and (message := _key_content_problem(secret)) is not None:
        problems.append((FIELD, message))
    return problems
