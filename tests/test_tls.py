"""Host certificates: the SANs every client may dial, stable keys, re-issue only when needed."""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from deploy_fixtures import LB_ADDRESS, fake_inventory, fake_secrets
from pgfleet import hostdata, spec, tls


def _names(stack: str, host: str):  # type: ignore[no-untyped-def]
    s = spec.load(stack)
    inv = fake_inventory(s, stack)
    return s, inv, hostdata.tls_names(s, inv, inv.host(host))


def test_database_node_names_every_address_a_client_may_dial() -> None:
    s, inv, names = _names("prod", "prod-main-2")
    for h in inv.by_role("postgres", "main"):
        assert h.private_ip in names.ips and h.public_ip in names.ips and h.name in names.dns
    assert LB_ADDRESS in names.ips  # the load balancer
    assert "prod-main" in names.dns  # the cluster's name
    assert "127.0.0.1" in names.ips and "localhost" in names.dns


def test_cluster_dns_name_from_the_spec_is_a_san() -> None:
    s = spec.load("lab")
    c = s.clusters[0].model_copy(update={"dns_name": "db.example.com"})
    s2 = s.model_copy(update={"clusters": [c]})
    inv = fake_inventory(s2, "lab")
    assert "db.example.com" in hostdata.tls_names(s2, inv, inv.host("lab-main-1")).dns


def test_issued_certificate_is_signed_by_the_ca_with_exact_sans_and_no_cn() -> None:
    s, inv, names = _names("lab", "lab-main-1")
    sec = fake_secrets(s)
    pem = tls.issue(sec.ca_cert_pem, sec.ca_key_pem, "lab-main-1", names)
    cert = x509.load_pem_x509_certificate(pem.encode())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(sec.ca_cert_pem.encode()))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(str(a) for a in san.get_values_for_type(x509.IPAddress)) == sorted(names.ips)
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(names.dns)
    # etcd refuses CN-bearing client certificates through its gateway once auth is on
    assert not cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert ipaddress.ip_address("198.18.0.13") in san.get_values_for_type(x509.IPAddress)


def test_host_key_is_stable_and_per_host() -> None:
    s = spec.load("lab")
    sec = fake_secrets(s)
    a = tls.key_pem(tls.host_key(sec.ca_key_pem, "lab-main-1"))
    assert a == tls.key_pem(tls.host_key(sec.ca_key_pem, "lab-main-1"))
    assert a != tls.key_pem(tls.host_key(sec.ca_key_pem, "lab-main-2"))


def test_reissue_only_when_needed() -> None:
    s, inv, names = _names("lab", "lab-main-1")
    sec = fake_secrets(s)
    pem = tls.issue(sec.ca_cert_pem, sec.ca_key_pem, "lab-main-1", names)
    assert tls.why_reissue(pem, sec.ca_cert_pem, sec.ca_key_pem, "lab-main-1", names) is None
    assert tls.why_reissue(None, sec.ca_cert_pem, sec.ca_key_pem, "lab-main-1", names) == "no certificate yet"
    more = tls.Names.of([*names.dns, "new.example.com"], list(names.ips))
    assert "names changed" in tls.why_reissue(pem, sec.ca_cert_pem, sec.ca_key_pem, "lab-main-1", more)
    other = fake_secrets(s)
    assert "not signed" in tls.why_reissue(pem, other.ca_cert_pem, other.ca_key_pem, "lab-main-1", names)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=tls.HOST_DAYS - tls.RENEW_DAYS + 1)
    assert "expires" in tls.why_reissue(pem, sec.ca_cert_pem, sec.ca_key_pem, "lab-main-1", names, now=later)
    assert "host key" in tls.why_reissue(pem, sec.ca_cert_pem, sec.ca_key_pem, "lab-main-2", names)
