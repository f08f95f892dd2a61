"""Shared fixtures: one lab for the whole test session, always torn down.

The ``lab`` fixture brings the ``lab`` stack up once (deploy and drill tests
reuse it) and its finalizer always runs ``lab down`` and then checks that
nothing is left on the machine; a leftover fails the run. If the lab cannot
start, every test that needs it errors with the reason (never a skip).

For developers iterating on one cluster, ``PGFLEET_KEEP_LAB=1`` keeps the lab
(and whatever is deployed on it) up after the session and deselects the
``lab_last`` tests that would wipe it; CI never sets it.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

LAB_STACK = "lab"
KEEP_LAB = os.environ.get("PGFLEET_KEEP_LAB") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab_last: runs after every other test (tears the shared lab down and up again)")
    config.addinivalue_line("markers", "lab_first: runs before every other lab test (needs a cluster no other test has disturbed)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that tear the shared lab down run last, so they never wipe a deployed cluster under other tests;
    tests that need an undisturbed cluster (the monitoring checks) run first."""
    items.sort(key=lambda item: 2 if item.get_closest_marker("lab_last") else 0 if item.get_closest_marker("lab_first") else 1)
    if KEEP_LAB:
        wiping = [i for i in items if i.get_closest_marker("lab_last")]
        if wiping:
            config.hook.pytest_deselected(items=wiping)
            items[:] = [i for i in items if not i.get_closest_marker("lab_last")]


def machine_leftovers(spec) -> list[str]:  # type: ignore[no-untyped-def]
    """Anything of a lab on this machine: the lab's own view, plus any nspawn, lab address or overlay at all."""
    from pgfleet import lab, state
    from pgfleet.lab.system import processes

    found = list(lab.leftovers(spec))
    found += [f"systemd-nspawn pid {p.pid}" for p in processes() if p.argv and p.argv[0].endswith("systemd-nspawn")]
    from pgfleet.lab import network

    subnet = ipaddress.ip_network(spec.network.subnet)
    found += [f"address {iface} on {ifname}" for ifname, iface in network.addresses() if iface.ip in subnet]
    root = str(state.root())
    for line in Path("/proc/self/mounts").read_text().splitlines():
        f = line.split()
        if f[2] == "overlay" and f[1].startswith(root):
            found.append(f"overlay mount {f[1]}")
    return sorted(set(found))


@pytest.fixture(scope="session")
def lab_spec():  # type: ignore[no-untyped-def]
    from pgfleet import spec

    return spec.load(LAB_STACK)


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest, lab_spec):  # type: ignore[no-untyped-def]
    """The running lab's Inventory; the lab is brought down (and checked empty) at session end."""
    from pgfleet import lab as lab_mod
    from pgfleet.errors import PgfleetError

    def teardown() -> None:
        lab_mod.down(lab_spec)
        left = machine_leftovers(lab_spec)
        assert not left, f"lab down left things behind: {left}"

    # Registered before `up`, so a lab that fails halfway is still torn down.
    if not KEEP_LAB:
        request.addfinalizer(teardown)
    try:
        lab_mod.up(lab_spec)
    except PgfleetError as e:
        pytest.fail(f"the lab could not start: {e}", pytrace=False)
    from pgfleet.providers.lab import inventory

    return inventory(lab_spec)


@pytest.fixture(scope="session")
def deployed(lab, lab_spec):  # type: ignore[no-untyped-def]
    """The lab with the HA cluster deployed once per session (deploy, backup and drill tests share it)."""
    from pgfleet import deployment

    return deployment.run(LAB_STACK, lab_spec, echo=False)


@pytest.fixture(scope="session")
def lab_secrets(lab_spec):  # type: ignore[no-untyped-def]
    from pgfleet.stack import Stack

    return Stack(LAB_STACK, lab_spec).secrets
