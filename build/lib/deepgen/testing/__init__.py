"""Fixture generators for tests, demos and benchmarks (never imported by a production stage)."""
