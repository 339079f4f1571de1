"""Kafka wiring: the broker, the outbox relay, and consuming with dead letters."""
