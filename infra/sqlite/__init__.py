"""The embedded store: event store and read tables in one SQLite file."""
