"""Loading and validating the deployment file and the secure-mode policy.

The public surface of ``config/``'s logic; the work is done in private modules:
``_reader`` (typed access to one TOML table), ``_parse`` (TOML to dataclasses),
``_validate`` (the guide's rules), ``_policy`` (the policy file and its overrides) and
``_simulated`` (the deployment that ``orchestrator simulate`` rehearses).

Every problem of a file is collected and raised at once as one
:class:`~config.errors.ConfigError`; nothing else happens on error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from config._parse import parse
from config._policy import POLICY_PATH, read_policy
from config._ready import ready_problems
from config._secret_checks import unavailable_secrets
from config._signing import signing_key_problems
from config._simulated import simulated_deployment
from config._validate import validate
from config.errors import ConfigError
from config.model import Deployment, Policy

__all__ = [
    "POLICY_PATH",
    "load_deployment",
    "load_policy",
    "simulated_deployment",
    "validate",
    "unavailable_secrets",
]


def load_deployment(path: str | Path, *, check_secrets: bool = True) -> Deployment:
    """Read, check and return the deployment declared in the TOML file at ``path``.

    Relative paths in the file (``ca_file``, OVA paths, ``file:`` secrets, the policy
    file) resolve against the file's directory. The policy must not weaken the guide's
    floor (:mod:`config._floor`); the recommended values it changed are listed in
    ``policy_deviations``, beside ``source_sha256``, ``policy_path`` and ``policy_sha256``.

    Args:
        path: the deployment file.
        check_secrets: also check what a run needs here and now, so that nothing is written
            before every check passed: every secret readable (the environment variable set,
            the file present; values are never shown) and none part of the file's ordinary
            text, every system's mode built, and every file the real systems will open (OVAs,
            CA files, ``pki.ca_chain``, the client certificate, ``known_hosts``) usable.

    Raises:
        ConfigError: listing every problem found, each as "<field>: <problem> (got
            <value>); <fix>", with fields as dotted paths ("conferencing[2].vlan").

    Example::

        deployment = load_deployment("orchestrator.toml", check_secrets=False)
        print([node.name for node in deployment.nodes])
    """
    source = Path(path)
    try:
        raw = source.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            [
                (
                    str(source),
                    "deployment file not found (got no file at this path); give -c FILE or create orchestrator.toml",
                )
            ]
        ) from None
    except IsADirectoryError:
        raise ConfigError([(str(source), "not a deployment file (got a directory); give the .toml file")]) from None
    except UnicodeDecodeError:
        raise ConfigError(
            [(str(source), "not a deployment file (got bytes that are not UTF-8 text); give the .toml file")]
        ) from None
    except OSError as exc:
        raise ConfigError(
            [
                (
                    str(source),
                    f"deployment file cannot be read (got {type(exc).__name__}: {exc.strerror}); "
                    "make it readable by this user",
                )
            ]
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([(str(source), f"not valid TOML ({exc}); fix the syntax")]) from exc
    deployment, problems = parse(data, source.resolve())
    deployment = dataclasses.replace(deployment, source_sha256=hashlib.sha256(raw).hexdigest())
    later = validate(deployment)
    if check_secrets:
        later += unavailable_secrets(deployment) + ready_problems(deployment) + signing_key_problems(deployment)
    # A field the reader refused is left None; the rules would only repeat it as "missing".
    refused = {field for field, _ in problems}
    problems += [problem for problem in later if problem[0] not in refused]
    if problems:
        raise ConfigError(problems)
    return deployment


def load_policy(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Policy:
    """Read the secure-mode policy, checked against its schema, with ``overrides`` applied.

    Args:
        path: the policy file; default :data:`POLICY_PATH`, the packaged
            ``config/secure-mode-policy.toml``.
        overrides: values to change, nested (``{"security_wizard": {"sip_udp_listen_port":
            5070}}``) or dotted (``{"security_wizard.sip_udp_listen_port": 5070}``). Only keys
            listed in a section's ``customizable`` may change.

    Raises:
        ConfigError: a missing or unknown section or key, a wrong type, a value out of
            range, or an override of a value the guide fixes.
    """
    policy, problems = read_policy(path, overrides)
    if problems or policy is None:
        raise ConfigError(problems)
    return policy
