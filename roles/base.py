"""Base OS: packages through apt (the lab's apt proxy), locale, limits, time, kernel tuning.

Packages are installed with a temporary ``policy-rc.d`` so none of them
starts a daemon with its default configuration (an etcd with a one-member
cluster, a Debian ``<major>/main`` cluster) before the roles have written ours.
Kernel settings that belong to the machine (vm.*, kernel.*, THP, I/O
scheduler, the clock) are skipped inside a container with a visible note.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files, server, systemd

from pgfleet import sizing
from roles._common import HardNofile, in_container, note, put, render

DEFAULTS = {
    "base_packages": [],
    "base_apt_proxy": "",
    "base_locale": "C.UTF-8",
    "base_network_sysctls": {},
    "base_kernel_sysctls": {},
    "base_sysctl_file": "/etc/sysctl.d/90-pgfleet.conf",
}

POLICY_RC = "/usr/sbin/policy-rc.d"


@deploy("Base OS", data_defaults=DEFAULTS)
def apply() -> None:
    d = host.data
    container = in_container()

    if d.base_apt_proxy:  # the lab's hosts come with their apt proxy set (pgfleet/lab/hosts.py)
        put("apt proxy", "/etc/apt/apt.conf.d/01pgfleet-proxy", f'Acquire::http::Proxy "{d.base_apt_proxy}";\n')
    # Debian's postgresql-common must never create its own <major>/main cluster: Patroni owns PostgreSQL.
    put("No Debian-managed PostgreSQL cluster", "/etc/postgresql-common/createcluster.conf",
        render("base/createcluster.conf.j2"))

    installed = host.get_fact(DebPackages)
    missing = [p for p in d.base_packages if p not in installed]
    if missing:
        put("Hold daemons during install (policy-rc.d)", POLICY_RC, "#!/bin/sh\n# pgfleet: no daemon starts with its default config\nexit 101\n", mode="0755")
        apt.packages(name=f"Install {', '.join(missing)}", packages=d.base_packages, update=True, no_recommends=True)
        files.file(name="Release daemons (remove policy-rc.d)", path=POLICY_RC, present=False)

    # /etc/default/locale is a link to it on Debian 13
    put("Locale", "/etc/locale.conf", f"LANG={d.base_locale}\n")
    put("Open-files limits", "/etc/security/limits.d/90-pgfleet.conf", render("base/limits.conf.j2", nofile=sizing.service_nofile(host.get_fact(HardNofile))))

    sysctls = dict(d.base_network_sysctls)
    if container:
        if d.base_kernel_sysctls:
            note(f"inside a {container} container: vm.*/kernel.* sysctls ({', '.join(d.base_kernel_sysctls)}), "
                 "transparent huge pages, the NVMe I/O scheduler and the clock belong to the machine; not set here")
    else:
        sysctls.update(d.base_kernel_sysctls)
    conf = put("sysctl settings", d.base_sysctl_file, render("base/sysctl.conf.j2", sysctls=sysctls))
    server.shell(name="Apply sysctl settings", commands=[f"sysctl -q -p {d.base_sysctl_file}"], _if=conf.did_change)

    if not container:
        thp = put("Transparent huge pages: never (unit)", "/etc/systemd/system/pgfleet-thp.service", render("base/thp.service.j2"))
        systemd.daemon_reload(name="systemd: reload units", _if=thp.did_change)
        systemd.service(name="Transparent huge pages: never", service="pgfleet-thp.service", running=True, enabled=True)
        udev = put("NVMe I/O scheduler: none", "/etc/udev/rules.d/60-pgfleet-nvme.rules", render("base/nvme-scheduler.rules.j2"))
        server.shell(name="Apply I/O scheduler rule", commands=["udevadm control --reload && udevadm trigger --subsystem-match=block --action=change"],
                     _if=udev.did_change)
        apt.packages(name="Time sync (systemd-timesyncd)", packages=["systemd-timesyncd"], no_recommends=True)
        systemd.service(name="Time sync running", service="systemd-timesyncd.service", running=True, enabled=True)
