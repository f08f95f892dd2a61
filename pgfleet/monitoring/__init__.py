"""Monitoring: what pgfleet measures, when it alerts, and how Prometheus, Alertmanager and Grafana are configured.

Everything here is a pure function of the spec (and, for scrape targets, of the
nodes passed in): :mod:`.metrics` is the one catalogue of metric names, and
:mod:`.rules`, :mod:`.dashboards`, :mod:`.prometheus` and :mod:`.alertmanager`
draw on it. Installing exporters and the monitoring host is the deploy's job.
"""
