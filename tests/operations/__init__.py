"""Operations: alert rules, the Grafana dashboard and the real-Prometheus end-to-end test."""
