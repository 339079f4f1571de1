"""hirestream notifications service."""
