"""Device identity: credentials, what each role may call, and attributing readings to a device.

Pure: no AWS SDK, no environment. A credential is a random key shown once; the registry keeps
only its SHA-256 (`hash_key`), so one GetItem by hash finds it and a leaked table leaks no key.
The REQUEST authorizer (`functions/authorize_request`) turns the registry's answer into an
`Identity` and an IAM policy naming every route of the identity's role: API Gateway caches that
policy per key for the authorizer's TTL, so a device costs at most one registry read per cache
period, whatever route it calls next. Ingest then checks each posted document against the
identity (`attribute`): the credential decides who posted, never the body.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from gasmon.errors import ForbiddenError
from gasmon.models import GasmonModel, Problem, is_safe_id

Role = Literal["device", "viewer"]
CredentialState = Literal["active", "revoked"]
KEY_ALPHABET = string.ascii_letters + string.digits
KEY_LENGTH = 40  # as long as an API Gateway API key

# What each role may call: (method, resource path). Devices post readings; viewers read the
# dashboard's query routes. Nothing else is reachable with a credential.
ROUTES: dict[Role, tuple[tuple[str, str], ...]] = {
    "device": (("POST", "/readings"), ("POST", "/gasdetector")),
    "viewer": (
        ("GET", "/series"),
        ("GET", "/devices"),
        ("GET", "/warnings"),
        ("GET", "/alerts"),
        ("GET", "/alarms"),
        ("GET", "/config"),
    ),
}


def new_key() -> str:
    """A fresh credential: 40 random letters and digits (238 bits), like an API Gateway key."""
    return "".join(secrets.choice(KEY_ALPHABET) for _ in range(KEY_LENGTH))


def hash_key(key: str) -> str:
    """The registry's lookup key for a credential: SHA-256, hex.

    Unsalted on purpose: keys are random with 238 bits of entropy, so there is nothing to guess,
    and the hash must be computable from the presented key alone for one GetItem to find it.
    """
    return hashlib.sha256(key.encode()).hexdigest()


def credential_id(key_hash: str) -> str:
    """A short, shareable id of a credential (the first 12 hex digits of its hash)."""
    return key_hash[:12]


def valid_name(name: str) -> bool:
    """Whether `name` can be a thing, group or viewer name: a safe id (`gasmon.models.is_safe_id`:
    1-64 of `[A-Za-z0-9._:-]`, not only dots), which AWS IoT also accepts as a thing name."""
    return bool(name) and is_safe_id(name)


class Credential(GasmonModel):
    """A credential as the registry keeps it (by the hash of its key)."""

    model_config = ConfigDict(frozen=True)

    key_hash: str
    role: Role
    name: str  # the thing name of a device, the viewer's name
    groupid: str | None = None  # a device's group
    state: CredentialState = "active"
    expires_at: datetime | None = None  # set on the old key when a credential is rotated

    def usable(self, now: datetime) -> bool:
        """Active, and not past the end of a rotation's grace period."""
        return self.state == "active" and (self.expires_at is None or now < self.expires_at)


class Identity(GasmonModel):
    """Who is calling, as the authorizer tells the functions (its context)."""

    model_config = ConfigDict(frozen=True)

    role: Role
    name: str
    groupid: str = ""

    def context(self) -> dict[str, str]:
        """The authorizer's context (API Gateway allows flat string, number and boolean values)."""
        return {"role": self.role, "name": self.name, "groupid": self.groupid}

    @classmethod
    def from_context(cls, context: Mapping[str, Any] | None) -> Identity | None:
        """The identity in an API Gateway event's `requestContext.authorizer`, or None if absent."""
        if not context or context.get("role") not in ROUTES or not context.get("name"):
            return None
        return cls(role=context["role"], name=str(context["name"]), groupid=str(context.get("groupid") or ""))


def identify(credential: Credential | None, now: datetime) -> Identity | None:
    """The identity behind a credential, or None when it is unknown, revoked or expired."""
    if credential is None or not credential.usable(now):
        return None
    if credential.role == "device" and not credential.groupid:
        return None  # a device credential without a group cannot be attributed
    return Identity(role=credential.role, name=credential.name, groupid=credential.groupid or "")


class AuthorizerAnswer(GasmonModel):
    """What a REQUEST authorizer returns to API Gateway."""

    principal_id: str
    effect: Literal["Allow", "Deny"]
    resources: list[str] = Field(default_factory=list)
    context: dict[str, str] = Field(default_factory=dict)

    def response(self) -> dict[str, Any]:
        """The authorizer's response document (principalId, policyDocument, context)."""
        answer: dict[str, Any] = {
            "principalId": self.principal_id,
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [{"Action": "execute-api:Invoke", "Effect": self.effect, "Resource": self.resources}],
            },
        }
        if self.context:
            answer["context"] = self.context
        return answer


def stage_arn(method_arn: str) -> str:
    """`arn:...:execute-api:region:account:api/stage` from a method ARN (`.../stage/VERB/path`)."""
    prefix, _, rest = method_arn.partition(":execute-api:")
    parts = rest.split("/")
    if not prefix or len(parts) < 3:
        raise ValueError(f"not an execute-api method ARN: {method_arn!r}")
    return f"{prefix}:execute-api:{parts[0]}/{parts[1]}"


def authorizer_answer(identity: Identity | None, method_arn: str) -> AuthorizerAnswer:
    """Allow every route of the identity's role (the answer is cached per key and reused for
    other routes), or Deny everything when there is no identity."""
    base = stage_arn(method_arn)
    if identity is None:
        return AuthorizerAnswer(principal_id="unknown", effect="Deny", resources=[f"{base}/*/*"])
    resources = [f"{base}/{method}{path}" for method, path in ROUTES[identity.role]]
    return AuthorizerAnswer(
        principal_id=f"{identity.role}:{identity.name}", effect="Allow", resources=resources, context=identity.context()
    )


def attribute(documents: Sequence[Any], is_batch: bool, identity: Identity | None) -> list[Any]:
    """The documents as posted by `identity`: each must name the device's own group (and its own
    `deviceid` if it names one); documents without a `deviceid` get the device's thing name.

    Raises `ForbiddenError` (403) without a device identity, or naming every `groupid`/`deviceid`
    field that is another device's. Documents that are not JSON objects, and ids that are not
    safe ids, are left to validation (422).
    """
    if identity is None or identity.role != "device":
        raise ForbiddenError("only a device credential may post readings")
    problems: list[Problem] = []
    attributed: list[Any] = []
    for index, raw in enumerate(documents):
        prefix = f"[{index}]." if is_batch else ""
        if not isinstance(raw, dict):
            attributed.append(raw)
            continue
        # An id outside the safe alphabet is not anyone's: validation rejects it with a 422.
        groupid = raw.get("groupid")
        if groupid is not None and is_safe_id(str(groupid)) and str(groupid) != identity.groupid:
            problems.append(
                Problem(path=f"{prefix}groupid", problem=f"is not this device's group ({identity.groupid})")
            )
        deviceid = raw.get("deviceid")
        if deviceid is not None and is_safe_id(str(deviceid)) and str(deviceid) != identity.name:
            problems.append(Problem(path=f"{prefix}deviceid", problem=f"is not this device ({identity.name})"))
        attributed.append(raw if deviceid is not None else {**raw, "deviceid": identity.name})
    if problems:
        raise ForbiddenError(f"the credential belongs to {identity.name} (group {identity.groupid})", problems)
    return attributed


class DeviceRecord(GasmonModel):
    """A device in the registry: its thing, group, sensors, place and credentials."""

    model_config = ConfigDict(frozen=True)

    thing: str
    groupid: str
    sensors: list[str] = Field(default_factory=list)
    location: str | None = None  # "lat, lon", as readings carry it
    key_hashes: list[str] = Field(default_factory=list)
    certificate_id: str | None = None
    state: CredentialState = "active"
    created_at: datetime
    last_seen: datetime | None = None

    @property
    def credential_ids(self) -> list[str]:
        return [credential_id(key_hash) for key_hash in self.key_hashes]
