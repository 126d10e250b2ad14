"""The local stand-in for AWS IoT's certificate authority, kept in `<data-dir>/ca/`.

In AWS a device's certificate is issued by AWS IoT (`CreateCertificateFromCsr` or
`CreateKeysAndCertificate`) and the device trusts Amazon Root CA 1. Locally the same files come
from this CA: `gasmon-admin --local provision` has it sign the device's key, and the broker's TLS
listener presents a server certificate it issued and accepts only client certificates it issued.
The files a Pi gets have the same shape either way (PEM certificate, PEM private key, PEM root CA).

The CA's key never leaves the data dir; it is created on first use and kept, so certificates
issued before a restart stay valid after it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_COMMON_NAME = "gasmon local IoT CA"
VALID_FOR = dt.timedelta(days=3650)


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate this CA issued, in the files a device (or the broker) needs."""

    certificate_pem: str
    private_key_pem: str
    certificate_id: str  # AWS's form: the SHA-256 of the DER certificate, 64 hex characters


def certificate_id(certificate_pem: str | bytes) -> str:
    """The certificate id AWS IoT gives a certificate: the hex SHA-256 of its DER bytes."""
    data = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
    der = x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


class LocalCA:
    """A CA kept in `<data_dir>/ca/` (ca.pem, ca.key; the key readable by its owner only)."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = Path(data_dir) / "ca"
        self.ca_file = self.directory / "ca.pem"
        self._key_file = self.directory / "ca.key"
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._certificate: x509.Certificate | None = None

    def ensure(self) -> Path:
        """Create the CA on first use; return the path of its PEM certificate (the root to trust)."""
        if self.ca_file.exists() and self._key_file.exists():
            return self.ca_file
        self.directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALID_FOR)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(self._key_file, _key_pem(key))
        self.ca_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return self.ca_file

    def issue_device_certificate(self, thing_name: str) -> IssuedCertificate:
        """A new key and a client certificate for one device (CN = its thing name)."""
        key = ec.generate_private_key(ec.SECP256R1())
        return self._issue(key.public_key(), _key_pem(key), thing_name, server=False)

    def sign_csr(self, csr_pem: str | bytes) -> IssuedCertificate:
        """A client certificate for a key the caller keeps (as `CreateCertificateFromCsr` does)."""
        data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
        csr = x509.load_pem_x509_csr(data)
        if not csr.is_signature_valid:
            raise ValueError("the CSR's signature does not verify")
        names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        common_name = str(names[0].value) if names else "device"
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey | _rsa_public_key_type()):
            raise ValueError("the CSR's key must be EC or RSA")
        return self._issue(public_key, "", common_name, server=False)

    def issue_server_certificate(self, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> IssuedCertificate:
        """The broker's TLS certificate, for the names a local client dials."""
        key = ec.generate_private_key(ec.SECP256R1())
        return self._issue(key.public_key(), _key_pem(key), hosts[0], server=True, hosts=hosts)

    def issued_this(self, certificate_pem: str | bytes) -> bool:
        """Whether a certificate was signed by this CA (a check, not a path validation)."""
        data = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
        certificate = x509.load_pem_x509_certificate(data)
        try:
            certificate.verify_directly_issued_by(self._ca_certificate())
        except (InvalidSignature, ValueError, TypeError):  # another issuer, or another key type
            return False
        return True

    # ---- internals ----

    def _issue(
        self,
        public_key: object,
        private_key_pem: str,
        common_name: str,
        *,
        server: bool,
        hosts: tuple[str, ...] = (),
    ) -> IssuedCertificate:
        self.ensure()
        ca_key, ca_certificate = self._ca_key(), self._ca_certificate()
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64] or "device")]))
            .issuer_name(ca_certificate.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALID_FOR)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if server:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        certificate = builder.sign(ca_key, hashes.SHA256())
        pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        return IssuedCertificate(
            certificate_pem=pem, private_key_pem=private_key_pem, certificate_id=certificate_id(pem)
        )

    def _ca_key(self) -> ec.EllipticCurvePrivateKey:
        if self._key is None:
            key = serialization.load_pem_private_key(self._key_file.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{self._key_file} is not the EC key this CA writes")
            self._key = key
        return self._key

    def _ca_certificate(self) -> x509.Certificate:
        if self._certificate is None:
            self.ensure()
            self._certificate = x509.load_pem_x509_certificate(self.ca_file.read_bytes())
        return self._certificate


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def _rsa_public_key_type() -> type:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.RSAPublicKey
