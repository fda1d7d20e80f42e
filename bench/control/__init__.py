"""Benchmark of the control API: many appliances heartbeating (`python -m bench.control`)."""
