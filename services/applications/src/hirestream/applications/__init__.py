"""hirestream applications service."""
