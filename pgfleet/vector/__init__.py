"""pgvector indexes of a running cluster, measured and advised on (``pgfleet vector advise``).

- :mod:`pgfleet.vector.catalog`: the index inventory (rows, dimensions, operator, build options, size) and churn
- :mod:`pgfleet.vector.advise`: the search for the smallest search setting that reaches a recall, and every advice,
  as pure functions
- :mod:`pgfleet.vector.session`: the measuring sessions (replica, primary read-only, the scratch database)
- :mod:`pgfleet.vector.report`: the tables, the stack change, the SQL and the JSON

It takes DSNs and plain figures: finding the stack's hosts, DSNs and the admin path is the CLI's
(:mod:`pgfleet.cli.vector`). The measurements reuse the recall probe's query shapes (:mod:`pgfleet.probe.measure`).
"""
