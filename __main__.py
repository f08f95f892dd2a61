"""Pulumi entry point: ``pulumi up -s STACK`` builds ``stacks/Pulumi.STACK.yaml``.

The spec is validated first; any problem ends the run with pgfleet's own
message (no traceback) before a single resource is touched.
"""

import pulumi

from pgfleet import fleet, spec
from pgfleet.errors import PgfleetError

try:
    fleet.run(spec.load(pulumi.get_stack()), pulumi.get_stack())
except PgfleetError as e:
    raise pulumi.RunError(str(e)) from None
