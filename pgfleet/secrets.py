"""Cluster secrets: database passwords and the cluster CA.

They live in the stack's encrypted state, never in git, user data or logs:
for cloud and static stacks the Pulumi program creates them (pulumi-random, pulumi-tls)
and exports them as the secret output ``secrets``; for the lab pgfleet
creates them once into ``<state>/<stack>/secrets.json`` (mode 0600). Both have
the shape of :class:`Secrets`.
"""

from __future__ import annotations

import datetime as dt
import secrets as pysecrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, ConfigDict

from pgfleet import state
from pgfleet.errors import PgfleetError
from pgfleet.spec import Spec

#: Every password a cluster needs; database owners get ``owner_<name>``.
PASSWORD_NAMES = (
    "superuser",  # postgres, local admin and Patroni's superuser
    "replication",  # streaming replication between members
    "rewind",  # pg_rewind
    "pgbouncer_auth",  # PgBouncer's auth_query user (low privilege)
    "monitor",  # pg_monitor + PgBouncer stats console
    "patroni_rest",  # Patroni REST API basic auth for state-changing calls
    "etcd_root",  # etcd root user
    "etcd_patroni",  # etcd user for Patroni
    "backup_cipher",  # pgBackRest repository encryption passphrase
)

#: Object storage credentials, when backups are on. Cloud stacks take them from
#: Pulumi config secrets (``pulumi config set --secret pgfleet:s3_access_key``);
#: the lab's object store accepts any, so the lab generates them.
S3_KEYS = ("s3_access_key", "s3_secret_key")

CA_DAYS = 3650


class Secrets(BaseModel):
    model_config = ConfigDict(extra="forbid")

    passwords: dict[str, str]
    ca_cert_pem: str
    ca_key_pem: str

    def password(self, name: str) -> str:
        try:
            return self.passwords[name]
        except KeyError:
            raise PgfleetError(f"the stack's secrets have no password {name!r}: run 'pgfleet deploy' to create missing ones") from None


def owner_password_name(owner: str) -> str:
    """The secret holding a database owner's password."""
    return f"owner_{owner}"


def password_names(spec: Spec) -> list[str]:
    """Passwords pgfleet generates for every stack."""
    owners = sorted({owner_password_name(d.owner) for c in spec.clusters for d in c.databases})
    return list(PASSWORD_NAMES) + owners


def s3_key_names(spec: Spec) -> list[str]:
    return list(S3_KEYS) if spec.backups.enabled else []


def user_secret_names(spec: Spec) -> list[str]:
    """Secrets the user provides as Pulumi config secrets: object storage keys, the SMTP password the spec names."""
    email = spec.monitoring.receivers.email if spec.monitoring.enabled else None
    return s3_key_names(spec) + ([email.password_secret] if email is not None and email.password_secret else [])


def new_password() -> str:
    # URL- and shell-safe, 32 chars, ~190 bits
    return pysecrets.token_urlsafe(24)


def new_ca(common_name: str, key: ec.EllipticCurvePrivateKey | None = None, now: dt.datetime | None = None) -> tuple[str, str]:
    """A self-signed cluster CA (ECDSA P-256): (cert PEM, key PEM).

    Given ``key`` and ``now`` (tests' snapshots), the CA is reproducible: the
    serial comes from the key and the signature is deterministic (RFC 6979).
    """
    fixed = key is not None and now is not None
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = now or dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pgfleet")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_key_serial(key) if fixed else x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256(), ecdsa_deterministic=fixed)
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def _key_serial(key: ec.EllipticCurvePrivateKey) -> int:
    """A positive serial below 2**159 (RFC 5280) from the public key: the same key, the same serial."""
    return int.from_bytes(x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest, "big") >> 1 or 1


def load_or_create_local(stack: str, spec: Spec) -> Secrets:
    """The lab's secrets: created once, then kept; missing passwords are added."""
    path = state.stack_dir(stack) / "secrets.json"
    if path.exists():
        data = Secrets.model_validate_json(path.read_text())
    else:
        cert, key = new_ca(f"pgfleet {stack} cluster CA")
        data = Secrets(passwords={}, ca_cert_pem=cert, ca_key_pem=key)
    missing = [n for n in password_names(spec) + user_secret_names(spec) if n not in data.passwords]
    if missing or not path.exists():
        data = data.model_copy(update={"passwords": {**data.passwords, **{n: new_password() for n in missing}}})
        state.write_private(path, data.model_dump_json(indent=2))
    return data
