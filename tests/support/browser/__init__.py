"""Helpers for the browser tests: headless Debian Chromium driven over the DevTools protocol."""
