"""Helpers the tests share: media, publishers, servers, validators."""
