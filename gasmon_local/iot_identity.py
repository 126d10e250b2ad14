"""Who a TLS client is, as AWS IoT decides it: its certificate in the registry, its thing, its policies.

The local registry is moto's IoT API, the same calls AWS IoT's own checks correspond to:
`describe_certificate` (is it registered, is it ACTIVE), `list_principal_things` (which things
it is attached to), `list_attached_policies` + `get_policy` (what it may do). `gasmon-admin
--local provision` writes them; the broker only reads them, once per CONNECT (the grant is kept
for the connection, as AWS caches a connection's policies).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from gasmon_local import aws, iot_policy
from gasmon_local.iot_policy import Arns, Connection, Decision, Policy

log = logging.getLogger("mqtt")
ACTIVE = "ACTIVE"


def certificate_id_of_der(certificate_der: bytes) -> str:
    """AWS IoT's certificate id: the hex SHA-256 of the DER certificate."""
    return hashlib.sha256(certificate_der).hexdigest()


@dataclass(frozen=True)
class RegisteredCertificate:
    """A certificate as the registry knows it."""

    certificate_id: str
    status: str
    things: tuple[str, ...] = ()
    policies: tuple[Policy, ...] = ()
    problems: tuple[str, ...] = ()  # policies attached but unreadable here (not applied)


class CertificateRegistry(Protocol):
    """The registry the broker asks about a client certificate (moto's IoT API here)."""

    def lookup(self, certificate_id: str) -> RegisteredCertificate | None: ...


@dataclass(frozen=True)
class Grant:
    """What one TLS connection may do: its principal and its policies, evaluated per request."""

    certificate_id: str
    policies: tuple[Policy, ...]
    connection: Connection
    arns: Arns
    problems: tuple[str, ...] = field(default=())

    def decide(self, action: str, resource: str) -> Decision:
        return iot_policy.evaluate(self.policies, action, resource, self.connection)


@dataclass(frozen=True)
class Refusal:
    """Why a CONNECT was refused, for the log line and the connect_failed event."""

    principal: str
    action: str
    resource: str
    reason: str


def authorize_connect(
    registered: RegisteredCertificate | None, certificate_id: str, client_id: str, arns: Arns
) -> Grant | Refusal:
    """AWS IoT's CONNECT check: a registered ACTIVE certificate, and iot:Connect on client/<clientId>."""
    resource = arns.client(client_id)
    if registered is None:
        return Refusal(certificate_id, iot_policy.CONNECT, resource, "the certificate is not registered")
    if registered.status != ACTIVE:
        return Refusal(certificate_id, iot_policy.CONNECT, resource, f"the certificate is {registered.status}")
    # AWS names the connection's thing by the client id, when that thing is attached to the certificate.
    thing = client_id if client_id in registered.things else None
    grant = Grant(certificate_id, registered.policies, Connection(client_id, thing), arns, registered.problems)
    decision = grant.decide(iot_policy.CONNECT, resource)
    if not decision.allowed:
        return Refusal(certificate_id, iot_policy.CONNECT, resource, decision.because)
    return grant


class MotoIotRegistry:
    """CertificateRegistry over moto's IoT API (the local stand-in for the AWS IoT registry)."""

    def __init__(self, endpoint: str, region: str) -> None:
        self.iot = aws.client("iot", endpoint, region)

    def lookup(self, certificate_id: str) -> RegisteredCertificate | None:
        try:
            description = self.iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]
        except self.iot.exceptions.ResourceNotFoundException:
            return None
        arn = description["certificateArn"]
        things = tuple(self.iot.list_principal_things(principal=arn).get("things", []))
        documents: list[tuple[str, Any]] = []
        for attached in self.iot.list_attached_policies(target=arn).get("policies", []):
            name = attached["policyName"]
            document = self.iot.get_policy(policyName=name)["policyDocument"]
            documents.append((name, document))
        policies, problems = iot_policy.readable_policies(documents)
        return RegisteredCertificate(certificate_id, description["status"], things, tuple(policies), tuple(problems))
