"""Kerbside's benchmark harness: `scripts/bench` (or `python -m bench`).

It measures Kerbside against the database ceiling (the same SQL through pgbench) and against a
peer (tipg on the same tables), one server at a time, and records ratios within one run.
See docs/performance.md for the method and the latest figures.
"""
