"""The real LDAP directory: ldap3 over StartTLS, each call in a worker thread.

What the orchestrator asks of the directory before it points the Management Node at it
(issue #9): that the service account binds, that the base DN and the search DNs exist, that
each mapped group exists, and which groups a user is in, found the way the Manager finds
them (its default group and membership filters, pexip-api.md 7.16), so that a login the
orchestrator predicts is a login the Manager grants.

    async with LdapDirectory.from_deployment(deployment) as directory:
        await directory.verify_bind()
        groups = await directory.user_groups(deployment.ldap.verify_user)

Transport, by ``ldap.transport``: ``starttls`` (the default: StartTLS on ``ldap.port``, 389)
or ``ldaps`` (TLS from the first byte, ``ldap.port`` 636 by default); either way the server's
certificate is verified against ``ldap.ca_file`` (else the system's CAs) and its name against
``ldap.server``, in the handshake. There is no fallback: a server that does not offer StartTLS
is refused, and ``plain`` is refused before a byte is sent unless the policy's
``authentication.ldap_permit_no_tls`` allows it (the guide's floor forbids it: the
configuration refuses it at load). ldap3 is synchronous, so every operation
runs in ``asyncio.to_thread`` on one connection, kept bound and guarded by a lock.
ldap3's exceptions are translated once, in :func:`map_ldap3_errors`; the service account's
password never reaches a message (only its reference does).
"""

from adapters.ldap._directory import LdapDirectory
from adapters.ldap._errors import map_ldap3_errors
from adapters.ldap._search import GROUP_FILTER, MEMBERSHIP_FILTER, USER_FILTER, USER_SEARCH_FILTER

__all__ = [
    "LdapDirectory",
    "map_ldap3_errors",
    "GROUP_FILTER",
    "MEMBERSHIP_FILTER",
    "USER_FILTER",
    "USER_SEARCH_FILTER",
]
