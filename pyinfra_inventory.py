"""pyinfra inventory of a pgfleet stack, for running pyinfra directly.

    PGFLEET_STACK=lab pyinfra -y pyinfra_inventory.py deploy.py

Hosts and their data come from the deploy's hand-off (:mod:`pgfleet.handoff`):
the file ``pgfleet deploy`` wrote, or, when it is absent or stale, computed
here from the stack (validated first) the same way: the hosts ``pgfleet
inventory STACK`` prints, grouped by role (postgres, etcd, client, monitor), each with
the host data of :func:`pgfleet.hostdata.host_data`.
"""

import os

from pgfleet import handoff

_groups = handoff.current(os.environ.get("PGFLEET_STACK", "lab")).groups

postgres = _groups["postgres"]
etcd = _groups["etcd"]
client = _groups["client"]
monitor = _groups["monitor"]
