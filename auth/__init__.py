"""Accounts, stream keys, live state and publish decisions."""
