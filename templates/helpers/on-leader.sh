#!/bin/sh
# pgfleet: run a command only on the cluster's current leader.
# Usage: on-leader.sh COMMAND [ARGS...]
# Exits 0 without running it on other members; fails when the cluster has no
# leader (then nobody could apply it, and the deploy must say so).
set -eu
ca=/etc/pgfleet/tls/ca.crt
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" https://127.0.0.1:8008/primary) || {
  echo "Patroni REST API on this host does not answer" >&2; exit 1; }
if [ "$code" = 200 ]; then
  exec "$@"
fi
leader=$(curl -sf --cacert "$ca" https://127.0.0.1:8008/cluster | python3 -c 'import json,sys; print(" ".join(m["name"] for m in json.load(sys.stdin)["members"] if m["role"] in ("leader", "standby_leader")))')
if [ -z "$leader" ]; then
  echo "the cluster has no leader" >&2; exit 1
fi
echo "skipped here: $leader is the leader and applies it"
