"""hirestream's benchmarks: each figure beside a baseline measured in the same run.

Run them with `bench/run.sh` (see bench/README.md). Nothing here is collected by pytest
(`testpaths = ["tests"]`), and no test asserts a timing.
"""
