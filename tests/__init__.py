"""The rtmpd test suite."""
