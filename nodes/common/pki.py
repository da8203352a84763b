"""The network's certificate authority: creates the CA and issues node certificates.

A node certificate names its holder twice: a URI SAN ``suretynet://ROLE/ENTITY`` that the
identity interceptor reads, and an IP SAN with the address the node serves and calls from,
which TLS hostname checks and address correlation rely on.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nodes.common.identity import ROLES, entity_uri, validate_entity_id

CA_VALIDITY_DAYS = 3650
NODE_VALIDITY_DAYS = 397


@dataclass(frozen=True)
class IssuedCertificate:
    """Where an issued certificate and its private key were written."""

    cert_path: Path
    key_path: Path


def _write_private_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The key is written owner-only from the start, never world-readable for a moment.
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(pem)


def _write_certificate(cert: x509.Certificate, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def init_ca(directory: Path, *, common_name: str = "SuretyNet Network CA") -> IssuedCertificate:
    """Creates a new network CA in ``directory`` (ca.pem, ca.key). Refuses to overwrite one."""
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    if cert_path.exists() or key_path.exists():
        raise FileExistsError(f"a CA already exists in {directory}")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private_key(key, key_path)
    _write_certificate(cert, cert_path)
    return IssuedCertificate(cert_path, key_path)


def issue_certificate(
    ca_directory: Path,
    *,
    role: str,
    entity_id: str,
    ip_addresses: list[str],
    out_directory: Path,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> IssuedCertificate:
    """Issues a certificate for ``suretynet://role/entity_id`` valid for both TLS server and client.

    ``not_before``/``not_after`` exist so that tests can mint expired and not-yet-valid
    certificates from the real CA; operators leave them unset.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(sorted(ROLES))}, not {role!r}")
    validate_entity_id(entity_id)
    addresses = [ipaddress.ip_address(ip) for ip in ip_addresses]
    if not addresses:
        raise ValueError("at least one IP address is required")
    ca_cert = x509.load_pem_x509_certificate((ca_directory / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_directory / "ca.key").read_bytes(), None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an EC key made by 'suretynet pki init'")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    start = not_before or now - datetime.timedelta(minutes=5)
    end = not_after or now + datetime.timedelta(days=NODE_VALIDITY_DAYS)
    alt_names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(entity_uri(role, entity_id))
    ]
    alt_names += [x509.IPAddress(address) for address in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, f"{role}/{entity_id}"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    stem = f"{role}-{entity_id}"
    issued = IssuedCertificate(out_directory / f"{stem}.pem", out_directory / f"{stem}.key")
    _write_private_key(key, issued.key_path)
    _write_certificate(cert, issued.cert_path)
    return issued


class CertificateError(ValueError):
    """A node's certificate does not fit its configuration; the message says how."""


def check_node_certificate(
    cert_pem: bytes, *, role: str, entity_id: str, address: str
) -> x509.Certificate:
    """Refuses a certificate that names another entity, lacks ``address``'s IP, or is out
    of its validity: every call to such a node would fail its TLS checks."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    now = datetime.datetime.now(datetime.UTC)
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
        raise CertificateError(
            f"the certificate is valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not now: renew it with "
            "'suretynet pki renew'"
        )
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as error:
        raise CertificateError("the certificate has no subject alternative names") from error
    expected = entity_uri(role, entity_id)
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if expected not in uris:
        raise CertificateError(f"the certificate names {', '.join(uris)}, not {expected}")
    host = address.rsplit(":", 1)[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return cert  # A host name: the certificate's IP SANs cannot be compared with it.
    ips = [str(value) for value in san.get_values_for_type(x509.IPAddress)]
    if not ip.is_unspecified and str(ip) not in ips:
        raise CertificateError(
            f"the certificate's IP SAN ({', '.join(ips) or 'none'}) does not include {ip}, "
            f"the address this node serves at ({address}): peers would refuse every TLS "
            f"handshake; issue one with 'suretynet pki issue --role {role} --entity "
            f"{entity_id} --ip {ip}', or fix the listen/advertised address"
        )
    return cert


def renew_certificate(ca_directory: Path, cert_path: Path) -> IssuedCertificate:
    """Issues a fresh certificate (and key) with the same names as ``cert_path``, in place.

    The new files replace the old ones atomically, so a node that reloads them
    (nodes/common/tls.py) never reads half a pair.
    """
    old = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ours = [uri for uri in san.get_values_for_type(x509.UniformResourceIdentifier)]
    if len(ours) != 1 or not ours[0].startswith("suretynet://"):
        raise CertificateError(f"{cert_path} is not a certificate 'suretynet pki issue' made")
    role, _, entity_id = ours[0].removeprefix("suretynet://").partition("/")
    ips = [str(value) for value in san.get_values_for_type(x509.IPAddress)]
    staging = cert_path.parent / f".renew-{role}-{entity_id}"
    issued = issue_certificate(
        ca_directory, role=role, entity_id=entity_id, ip_addresses=ips, out_directory=staging
    )
    key_path = cert_path.with_suffix(".key")
    # The key first: a reload pairs the files by reading both, and checks they match.
    issued.key_path.replace(key_path)
    issued.cert_path.replace(cert_path)
    staging.rmdir()
    return IssuedCertificate(cert_path, key_path)
