"""Failure drills: a real write workload, an injected fault, measured RTO and lost writes.

One module per concern:

- :mod:`.workload` — concurrent writers through the read-write endpoint, every
  acknowledged id recorded with its time;
- :mod:`.analysis` — pure functions from recorded facts to verdicts (RTO, set
  check, split brain, timeline), no I/O;
- :mod:`.control` — what a drill may do to a cluster (:class:`ClusterControl`)
  and its Patroni/lab-backed implementation;
- :mod:`.scenarios` — the faults of issue 6 and how each recovers;
- :mod:`.runner` — one drill end to end;
- :mod:`.report` — a table for people, JSON for machines, the exit code.
"""
