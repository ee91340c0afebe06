"""causality-sidecar: a Prometheus scrape target, reverse proxy and OTLP ingest in one process."""

__version__ = "0.1.0"
