"""pgfleet's lab: Debian 13 hosts in systemd-nspawn on one machine (provider ``lab``).

The lab is the default environment and the proof ground: the same inventory
shape and deploy as Hetzner, on real hosts that can be killed and partitioned.
"""

from pgfleet.lab.ops import HostStatus, UpReport, down, exec_on, heal, kill, leftovers, partition, run, start, status, up

__all__ = ["HostStatus", "UpReport", "down", "exec_on", "heal", "kill", "leftovers", "partition", "run", "start", "status", "up"]
