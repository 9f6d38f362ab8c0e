"""Benchmarks: our server against the servers users would pick instead, side by side."""
