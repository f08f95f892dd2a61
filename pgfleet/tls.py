"""Host certificates signed by the cluster CA.

One certificate per host serves PostgreSQL, PgBouncer, the Patroni REST API
and etcd (server and client use). HAProxy passes TLS through, so the host
that answers may not be the host a client dialled: every database host's
certificate therefore names *every* address and name a client may dial
(all node addresses and names, the load balancer, the cluster DNS name).

Re-deploys must change nothing, so the host key is derived from the CA key
and the host name (same input, same key) and an existing certificate is kept
while it is signed by this CA, names exactly the wanted SANs and has more than
:data:`RENEW_DAYS` left. Whoever holds the CA key can impersonate any host
anyway, so deriving host keys from it adds no exposure.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOST_DAYS = 825
#: Re-issue a host certificate this long before it expires (as Ubicloud does).
RENEW_DAYS = 30
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@dataclass(frozen=True)
class Names:
    """What a certificate must name: DNS names and IP addresses (SANs)."""

    dns: tuple[str, ...]
    ips: tuple[str, ...]

    @classmethod
    def of(cls, dns: list[str], ips: list[str]) -> Names:
        return cls(tuple(sorted(set(dns))), tuple(sorted(set(ips), key=lambda a: ipaddress.ip_address(a))))


def subject(host: str, common_name: str | None = None) -> x509.Name:
    """A certificate's subject: host certificates have no CommonName on purpose.

    etcd refuses requests through its JSON gateway (which Patroni uses) from a
    client certificate that has a CommonName once authentication is on
    ("CommonName of client sending a request against gateway will be
    ignored"); clients check the SANs, never the CN. Only client
    certificates for services that authorise by CN (pgBackRest's TLS server:
    ``tls-server-auth``) get one.
    """
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pgfleet"), x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, host)]
    if common_name:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def host_key(ca_key_pem: str, host: str) -> ec.EllipticCurvePrivateKey:
    """The host's P-256 key, derived from the CA key and the host name (stable across deploys)."""
    seed = HKDF(algorithm=hashes.SHA256(), length=48, salt=b"pgfleet host key v1", info=host.encode()).derive(ca_key_pem.encode())
    scalar = int.from_bytes(seed, "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def issue(ca_cert_pem: str, ca_key_pem: str, host: str, names: Names, days: int = HOST_DAYS,
          common_name: str | None = None) -> str:
    """A certificate for ``host`` (server and client use) signed by the cluster CA.

    ``host`` also selects the derived key: a second certificate for the same
    machine (a client identity with ``common_name``) uses a distinct key name.
    """
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    key = host_key(ca_key_pem, host)
    now = dt.datetime.now(dt.timezone.utc)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names.dns]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in names.ips]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject(host, common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False, data_encipherment=False,
                                     key_agreement=True, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)  # type: ignore[arg-type]
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def names_of(cert_pem: str) -> Names:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return Names((), ())
    return Names.of(san.get_values_for_type(x509.DNSName), [str(a) for a in san.get_values_for_type(x509.IPAddress)])


def why_reissue(cert_pem: str | None, ca_cert_pem: str, ca_key_pem: str, host: str, names: Names,
                now: dt.datetime | None = None, common_name: str | None = None) -> str | None:
    """Why the host's current certificate must be replaced, or None to keep it."""
    if not cert_pem or "BEGIN CERTIFICATE" not in cert_pem:
        return "no certificate yet"
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError as e:
        return f"unreadable certificate ({e})"
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return "not signed by this cluster's CA"
    if cert.public_key() != host_key(ca_key_pem, host).public_key():
        return "does not match the host key"
    if cert.subject != subject(host, common_name):
        return f"subject changed (has {cert.subject.rfc4514_string()})"
    have = names_of(cert_pem)
    if have != names:
        return f"names changed (has {list(have.dns + have.ips)}, wants {list(names.dns + names.ips)})"
    now = now or dt.datetime.now(dt.timezone.utc)
    if cert.not_valid_after_utc - now < dt.timedelta(days=RENEW_DAYS):
        return f"expires {cert.not_valid_after_utc:%Y-%m-%d}, within {RENEW_DAYS} days"
    return None


def fingerprint(pem: str) -> str:
    return hashlib.sha256(pem.encode()).hexdigest()[:16]
