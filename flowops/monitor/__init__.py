"""The monitoring agent: probes of MLflow, DVC repositories, model servers and Kafka,
their results as Prometheus metrics, health events and alerts (``flowops monitor``)."""
