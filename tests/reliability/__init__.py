"""The reliability and security suite (lane ``reliability``): faults, hostile input and
secrets, with the figures written to ``tests/reliability/REPORT.md``."""
