"""Benchmarks for rtmpd: media generation, an RTMP load generator, viewers and the scenarios.

Run `python -m bench.run --help` from the project folder; results go to docs/BENCHMARKS.md.
"""
