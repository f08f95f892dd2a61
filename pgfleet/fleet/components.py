"""The fleet's Pulumi components, one per logical unit.

Each component only turns decisions from :mod:`pgfleet.fleet.policy` and
:func:`pgfleet.inventory.plan` into resources; it computes nothing itself.
Children are parented to their component, so ``pulumi stack --show-urns``
reads like the design: network, access, secrets, clusters, load balancers.
"""

from __future__ import annotations

import pulumi
import pulumi_hcloud as hcloud
import pulumi_random as random
import pulumi_tls as tls

from pgfleet import secrets as fleet_secrets
from pgfleet.fleet import policy
from pgfleet.inventory import ROLE_ETCD, ROLE_MONITOR, ROLE_POSTGRES, HostPlan
from pgfleet.spec import Spec

TYPE = "pgfleet:fleet"


def _child(parent: pulumi.Resource, **kwargs: object) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, **kwargs)  # type: ignore[arg-type]


def _int_id(resource: pulumi.CustomResource) -> pulumi.Output[int]:
    """Hetzner ids are numbers; Pulumi hands every id over as a string."""
    return resource.id.apply(int)


class ClusterSecrets(pulumi.ComponentResource):
    """Every password of :func:`pgfleet.secrets.password_names` and the cluster CA.

    They are created by providers whose state Pulumi encrypts, so they live in
    the stack's state and nowhere else; :attr:`value` has the shape of
    :class:`pgfleet.secrets.Secrets` and is a secret output.
    """

    def __init__(self, name: str, spec: Spec, stack: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TYPE}:ClusterSecrets", name, None, opts)
        # 32 letters and digits (~190 bits): safe in URLs, pgpass, YAML and shells unquoted.
        self.passwords = {
            n: random.RandomPassword(f"{name}-{n}", length=32, special=False, opts=_child(self))
            for n in fleet_secrets.password_names(spec)
        }
        # ECDSA P-256, like the lab's CA (pgfleet.secrets.new_ca).
        self.ca_key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=_child(self))
        self.ca_cert = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=self.ca_key.private_key_pem,
            is_ca_certificate=True,
            validity_period_hours=fleet_secrets.CA_DAYS * 24,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
            subject=tls.SelfSignedCertSubjectArgs(common_name=f"pgfleet {stack} cluster CA", organization="pgfleet"),
            opts=_child(self),
        )
        # Object storage keys and the SMTP password are the user's own: Pulumi config secrets, required when used.
        config = pulumi.Config("pgfleet")
        s3_keys = {n: config.require_secret(n) for n in fleet_secrets.user_secret_names(spec)}
        combined = pulumi.Output.from_input({
            "passwords": {**{n: p.result for n, p in self.passwords.items()}, **s3_keys},
            "ca_cert_pem": self.ca_cert.cert_pem,
            "ca_key_pem": self.ca_key.private_key_pem_pkcs8,
        })
        self.value: pulumi.Output[dict] = pulumi.Output.secret(
            combined.apply(lambda v: fleet_secrets.Secrets.model_validate(v).model_dump())
        )
        self.register_outputs({"ca_cert_pem": self.ca_cert.cert_pem})


class FleetNetwork(pulumi.ComponentResource):
    """The private network all cluster traffic uses (Hetzner firewalls do not filter it)."""

    def __init__(self, name: str, spec: Spec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TYPE}:FleetNetwork", name, None, opts)
        self.network = hcloud.Network(name, name=spec.resource_name(), ip_range=spec.network.ip_range,
                                      labels=policy.labels(spec), opts=_child(self))
        self.network_id = _int_id(self.network)
        self.subnet = hcloud.NetworkSubnet(f"{name}-subnet", network_id=self.network_id, type="cloud",
                                           network_zone=spec.network_zone, ip_range=spec.network.subnet, opts=_child(self))
        self.register_outputs({"network_id": self.network.id, "subnet": self.subnet.ip_range})


class FleetAccess(pulumi.ComponentResource):
    """How the first SSH login works: the stack's key at Hetzner and the boot-time user data."""

    def __init__(self, name: str, spec: Spec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TYPE}:FleetAccess", name, None, opts)
        self.ssh_key = hcloud.SshKey(name, name=spec.resource_name(), public_key=spec.ssh_public_key,
                                     labels=policy.labels(spec), opts=_child(self))
        self.user_data = policy.user_data(spec)
        self.register_outputs({"ssh_key_id": self.ssh_key.id})


class _ServerGroup(pulumi.ComponentResource):
    """Servers sharing one ``spread`` placement group (no two on one physical host) and one firewall."""

    def __init__(self, kind: str, name: str, spec: Spec, hosts: list[HostPlan], *, roles: tuple[str, ...],
                 access: FleetAccess, network: FleetNetwork, opts: pulumi.ResourceOptions | None) -> None:
        super().__init__(f"{TYPE}:{kind}", name, None, opts)
        group_name = spec.resource_name(name)
        group_labels = policy.labels(spec, cluster=hosts[0].cluster) if hosts else policy.labels(spec)
        self.placement_group = hcloud.PlacementGroup(f"{name}-spread", name=group_name, type="spread",
                                                     labels=group_labels, opts=_child(self))
        self.firewall = hcloud.Firewall(
            f"{name}-firewall",
            name=group_name,
            labels=group_labels,
            rules=[hcloud.FirewallRuleArgs(direction="in", protocol="tcp", port=r.port, source_ips=list(r.sources),
                                           description=r.description)
                   for r in policy.firewall_rules(spec, roles)],
            opts=_child(self),
        )
        self.servers: dict[str, hcloud.Server] = {h.name: self._server(spec, h, access, network) for h in hosts}
        self.register_outputs({"public_ips": {n: s.ipv4_address for n, s in self.servers.items()}})

    def _server(self, spec: Spec, host: HostPlan, access: FleetAccess, network: FleetNetwork) -> hcloud.Server:
        return hcloud.Server(
            host.name,
            name=host.name,
            server_type=host.server_type,
            image=policy.IMAGE,
            location=spec.location,
            placement_group_id=_int_id(self.placement_group),
            # Given at creation, so a server is never up without its firewall.
            firewall_ids=[_int_id(self.firewall)],
            ssh_keys=[access.ssh_key.id],
            user_data=access.user_data,
            labels=policy.labels(spec, host),
            public_nets=[hcloud.ServerPublicNetArgs(ipv4_enabled=True, ipv6_enabled=True)],
            # alias_ips=[] stops the provider detaching and re-attaching the network on every update.
            networks=[hcloud.ServerNetworkArgs(network_id=network.network_id, ip=host.private_ip, alias_ips=[])],
            # Data lives on the local NVMe root disk: no volumes, and production servers
            # cannot be deleted or rebuilt by a stray click or API call.
            delete_protection=spec.production,
            rebuild_protection=spec.production,
            shutdown_before_deletion=True,
            opts=_child(
                self,
                # The subnet must exist before a server can take an address in it.
                depends_on=[network.subnet],
                # A changed key, boot script or image would *replace* a database server;
                # they only matter at first boot, later access is the deploy's job.
                ignore_changes=["ssh_keys", "user_data", "image"],
            ),
        )


class DatabaseCluster(_ServerGroup):
    """One cluster's PostgreSQL nodes; clients reach HAProxy on them from the client ranges."""

    def __init__(self, name: str, spec: Spec, hosts: list[HostPlan], access: FleetAccess, network: FleetNetwork,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("DatabaseCluster", name, spec, hosts, roles=(ROLE_POSTGRES,), access=access, network=network, opts=opts)


class EtcdNodes(_ServerGroup):
    """Dedicated etcd members (``etcd.placement: dedicated``); only admins reach them from outside."""

    def __init__(self, name: str, spec: Spec, hosts: list[HostPlan], access: FleetAccess, network: FleetNetwork,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("EtcdNodes", name, spec, hosts, roles=(ROLE_ETCD,), access=access, network=network, opts=opts)


class MonitoringHost(_ServerGroup):
    """The small host that runs Prometheus, Alertmanager and pgfleet's probe; it scrapes the others over the private network."""

    def __init__(self, name: str, spec: Spec, hosts: list[HostPlan], access: FleetAccess, network: FleetNetwork,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("MonitoringHost", name, spec, hosts, roles=(ROLE_MONITOR,), access=access, network=network, opts=opts)


class ClusterLoadBalancer(pulumi.ComponentResource):
    """A Hetzner load balancer in front of one cluster, reachable on the private network only.

    Hetzner firewalls cannot be applied to load balancers, so a public
    interface would offer the database endpoints to the whole internet,
    whatever ``client_cidrs`` says; it is switched off. Clients in the private
    network dial :attr:`address`; clients outside dial the nodes' HAProxy
    (allowed from ``client_cidrs``) with a multi-host connection string.
    """

    def __init__(self, name: str, spec: Spec, cluster_index: int, network: FleetNetwork, servers: dict[str, hcloud.Server],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TYPE}:ClusterLoadBalancer", name, None, opts)
        cluster = spec.clusters[cluster_index].name
        self.load_balancer = hcloud.LoadBalancer(
            name, name=spec.resource_name(cluster), load_balancer_type=spec.load_balancer.type,
            location=spec.location, algorithm=hcloud.LoadBalancerAlgorithmArgs(type="least_connections"),
            labels=policy.labels(spec, cluster=cluster), opts=_child(self),
        )
        lb_id = _int_id(self.load_balancer)
        self.attachment = hcloud.LoadBalancerNetwork(
            f"{name}-network", load_balancer_id=lb_id, network_id=network.network_id,
            ip=policy.load_balancer_ip(spec, cluster_index), enable_public_interface=False,
            opts=_child(self, depends_on=[network.subnet]),
        )
        self.targets = [
            hcloud.LoadBalancerTarget(f"{name}-{host}", type="server", load_balancer_id=lb_id, server_id=_int_id(server),
                                      use_private_ip=True, opts=_child(self, depends_on=[self.attachment]))
            for host, server in servers.items()
        ]
        self.services = [self._service(name, svc) for svc in policy.LB_SERVICES]
        self.address: pulumi.Output[str] = self.attachment.ip
        self.register_outputs({"address": self.address})

    def _service(self, name: str, svc: policy.LbService) -> hcloud.LoadBalancerService:
        # TCP passthrough: TLS ends at PgBouncer/PostgreSQL, never at the balancer.
        #
        # The health check asks Patroni's REST API which node is primary or
        # replica. Patroni serves it over HTTPS here, and Hetzner's check speaks
        # HTTPS when ``http.tls`` is set (the Cloud API documents the field as
        # "Use HTTPS for health check"; there is no field for a CA, so it cannot
        # be checking our private cluster CA). Patroni answers 200 only on the
        # matching role (503 otherwise), so status 200 is the test. For this to
        # pass, Patroni's REST API must not require client certificates for GET
        # (``verify_client`` none/optional). A plain TCP check on Patroni's port would be
        # useless: every member listens there. Not verified against a real
        # Hetzner account from here; if a live check ever fails on TLS, the
        # fallback is a TCP check on HAProxy's own port (every node's HAProxy
        # already routes to the right member).
        check = hcloud.LoadBalancerServiceHealthCheckArgs(
            protocol="http", port=policy.PATRONI_PORT, interval=policy.LB_CHECK_INTERVAL,
            timeout=policy.LB_CHECK_TIMEOUT, retries=policy.LB_CHECK_RETRIES,
            http=hcloud.LoadBalancerServiceHealthCheckHttpArgs(path=svc.check_path, tls=True, status_codes=["200"]),
        )
        return hcloud.LoadBalancerService(
            f"{name}-{svc.port}", load_balancer_id=self.load_balancer.id, protocol="tcp", listen_port=svc.port,
            destination_port=svc.port, proxyprotocol=False, health_check=check, opts=_child(self),
        )
