"""The local CA: the certificates `gasmon-admin --local provision` hands a Pi and the broker trusts."""

import ssl
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gasmon_local.local_ca import LocalCA, certificate_id


def test_a_device_certificate_is_issued_by_the_ca_and_names_the_thing(tmp_path: Path) -> None:
    # Given a new data dir
    ca = LocalCA(tmp_path)
    # When a device certificate is issued
    issued = ca.issue_device_certificate("pi-x")
    # Then it names the thing, verifies against the CA file, and carries AWS's id form
    certificate = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "pi-x"
    certificate.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.ca_file.read_bytes()))
    assert issued.certificate_id == certificate_id(issued.certificate_pem)
    assert len(issued.certificate_id) == 64
    assert "PRIVATE KEY" in issued.private_key_pem


def test_the_ca_survives_a_restart_and_its_key_is_private(tmp_path: Path) -> None:
    # Given a certificate issued before a restart
    issued = LocalCA(tmp_path).issue_device_certificate("pi-x")
    # When the CA is opened again from the same data dir
    again = LocalCA(tmp_path)
    # Then the old certificate is still its own, and the key file is the owner's only
    assert again.issued_this(issued.certificate_pem)
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600


def test_a_certificate_from_another_ca_is_not_its_own(tmp_path: Path) -> None:
    # Given two data dirs, two CAs
    ours, theirs = LocalCA(tmp_path / "a"), LocalCA(tmp_path / "b")
    # Then a certificate of one is refused by the other
    assert not ours.issued_this(theirs.issue_device_certificate("pi-x").certificate_pem)


def test_a_csr_is_signed_without_the_key_leaving_the_device(tmp_path: Path) -> None:
    # Given a key made on the device and its CSR
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pi-y")]))
        .sign(key, hashes.SHA256())
    )
    # When the CA signs it
    issued = LocalCA(tmp_path).sign_csr(csr.public_bytes(serialization.Encoding.PEM))
    # Then the certificate holds the device's public key and no private key is returned
    certificate = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    assert certificate.public_key() == key.public_key()
    assert issued.private_key_pem == ""


def test_the_server_certificate_loads_into_a_tls_context(tmp_path: Path) -> None:
    # Given the broker's certificate
    ca = LocalCA(tmp_path)
    server = ca.issue_server_certificate()
    (tmp_path / "server.pem").write_text(server.certificate_pem)
    (tmp_path / "server.key").write_text(server.private_key_pem)
    # Then Python's ssl accepts the pair, and a client context trusts the CA file
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    ssl.create_default_context(cafile=str(ca.ca_file))
