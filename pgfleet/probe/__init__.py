"""The pgvector recall probe: a Prometheus exporter on the monitoring host.

It compares, for sampled stored vectors, the top-k the application's ANN query
returns (logged in as the application role, so with its own settings) with the
exact top-k (index scans off) on the same replica, through the direct read-only
endpoint, and reports recall, latencies, row count and whether the index fits
in memory.

The deploy copies this directory as it is (``pgfleet_probe``) to the monitoring
host, where nothing can be pip installed: modules import the standard library,
``psycopg`` and ``prometheus_client`` (Debian's python3-psycopg and
python3-prometheus-client) and each other relatively, never the rest of
pgfleet (import-linter checks it: ``[tool.importlinter]`` in pyproject.toml).
"""
