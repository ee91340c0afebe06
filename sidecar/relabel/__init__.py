"""Relabel and drop rules (``relabel:``): Prometheus's ``relabel_config`` on every source.

`sidecar.relabel.regex` checks and anchors the regexes, `sidecar.relabel.rules` runs a
chain over one label set, `sidecar.relabel.families` applies the chains to a source's
families (and refuses results that would break a family), `sidecar.relabel.ingest`
drops an ingested series before it is stored.
"""
