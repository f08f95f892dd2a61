"""pyinfra inventory of a pgfleet stack, for running pyinfra directly.

    PGFLEET_STACK=lab pyinfra -y pyinfra_inventory.py deploy.py

The stack (default ``lab``) is validated first; hosts come from the same
inventory ``pgfleet inventory STACK`` prints, grouped by role (postgres, etcd,
client), each with the host data of :func:`pgfleet.hostdata.host_data`.
"""

import os

from pgfleet import hostdata
from pgfleet.stack import Stack

_stack = os.environ.get("PGFLEET_STACK", "lab")
_spec = hostdata.spec_for(_stack)
_groups = hostdata.pyinfra_groups(_spec, Stack(_stack, _spec).inventory())

postgres = _groups["postgres"]
etcd = _groups["etcd"]
client = _groups["client"]
