"""hirestream postings service."""
