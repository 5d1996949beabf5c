"""Moved to bench.core.errors; this alias goes once every importer uses the new path."""
from bench.core.errors import UserError  # noqa: F401
