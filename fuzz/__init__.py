"""Fuzz targets for the parsers, their seed corpus and the atheris runner."""
