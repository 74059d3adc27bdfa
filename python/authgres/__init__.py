"""authgres: Postgres-native authentication with a GoTrue-compatible HTTP API."""

__version__ = "0.1.0"
