"""Observability: structured JSON logs (obs.logs); the Prometheus metrics of the API live in api.metrics."""
