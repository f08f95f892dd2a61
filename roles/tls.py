"""TLS: the cluster CA and this host's certificate and key.

The key is derived (stable), the certificate is re-issued only when the one
on the host is missing, from another CA, names other SANs than wanted, or
expires within 30 days (see :mod:`pgfleet.tls`), so a re-deploy changes
nothing. The key is readable by root and the ``ssl-cert`` group (postgres,
etcd); PostgreSQL accepts a root-owned key with mode 0640.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import FileContents
from pyinfra.operations import files

from pgfleet import contract, tls
from roles._common import note, put, secrets

DEFAULTS = {
    "tls_dir": contract.TLS_DIR,
    "tls_group": contract.TLS_GROUP,
    "tls_dns_names": [],
    "tls_ip_addresses": [],
}


@deploy("TLS", data_defaults=DEFAULTS)
def apply() -> bool:
    """Returns whether the host certificate was replaced (deploy.py passes it to the roles that reload for it)."""
    d = host.data
    s = secrets()
    names = tls.Names.of(d.tls_dns_names, d.tls_ip_addresses)
    files.directory(name="TLS directory", path=d.tls_dir, mode="0755", user="root", group="root")
    put("Cluster CA certificate", f"{d.tls_dir}/ca.crt", s.ca_cert_pem)
    put("Host key", f"{d.tls_dir}/host.key", tls.key_pem(tls.host_key(s.ca_key_pem, host.name)), mode="0640", group=d.tls_group)

    # later roles reload their service when the certificate was replaced
    return certificate("Host certificate", f"{d.tls_dir}/host.crt", host.name, names)


def certificate(name: str, path: str, key_name: str, names: tls.Names, common_name: str | None = None) -> bool:
    """Keep the certificate at ``path`` (for the derived key ``key_name``) or issue it anew when
    :func:`pgfleet.tls.why_reissue` says so; True when an existing certificate is replaced."""
    s = secrets()
    current = host.get_fact(FileContents, path=path)
    current_pem = "\n".join(current) + "\n" if current else None
    why = tls.why_reissue(current_pem, s.ca_cert_pem, s.ca_key_pem, key_name, names, common_name=common_name)
    if why is None:
        return False
    note(f"issuing {name.lower()}: {why}")
    put(name, path, tls.issue(s.ca_cert_pem, s.ca_key_pem, key_name, names, common_name=common_name))
    return current_pem is not None
