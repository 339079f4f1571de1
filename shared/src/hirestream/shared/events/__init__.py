"""Event envelope and payload models: the data on the Kafka topics (docs/events.md)."""
