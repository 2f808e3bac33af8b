"""Reliability and security suites: fuzzing, role matrix, resource limits, faults."""
