"""Load benchmarks for teamboard and the ceilings they are compared against (see README.md)."""
