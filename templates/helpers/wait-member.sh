#!/bin/sh
# pgfleet: wait until this host's Patroni member runs PostgreSQL and the
# cluster has a leader. Usage: wait-member.sh SECONDS
set -u
ca=/etc/pgfleet/tls/ca.crt
deadline=$(( $(date +%s) + ${1:-300} ))
restarts0=$(systemctl show -p NRestarts --value patroni.service)
while [ "$(date +%s)" -lt "$deadline" ]; do
  if curl -sf -o /dev/null --cacert "$ca" https://127.0.0.1:8008/health \
     && curl -sf --cacert "$ca" https://127.0.0.1:8008/cluster | grep -q '"role": *"leader"'; then
    echo "member running, cluster has a leader"
    exit 0
  fi
  # a Patroni that keeps crashing will not come up by waiting: say why now
  if [ "$(systemctl show -p NRestarts --value patroni.service)" -ge $((restarts0 + 3)) ]; then
    echo "patroni.service keeps failing:" >&2
    journalctl -u patroni -n 30 --no-pager >&2 || true
    exit 1
  fi
  sleep 2
done
echo "timed out after ${1:-300}s waiting for this member; Patroni says:" >&2
curl -s --cacert "$ca" https://127.0.0.1:8008/patroni >&2 || true
journalctl -u patroni -n 30 --no-pager >&2 || true
exit 1
