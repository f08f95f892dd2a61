"""The Pulumi side of pgfleet: Hetzner Cloud fleets (provider ``hcloud``) and the
secrets of ``static`` fleets. ``pulumi up -s STACK`` runs :func:`run` through
the repository's ``__main__.py``; the lab is built by ``pgfleet lab`` instead.
"""

from pgfleet.fleet.program import build, run

__all__ = ["build", "run"]
