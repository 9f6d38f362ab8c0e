"""Shared e2e harness: cluster providers, release helper, load prober, cluster recorder, reports.

Each module has one job; the suites under tests/e2e/ wire them together through fixtures in
tests/e2e/conftest.py and never know which cluster provider they run on.
"""
