"""The catalog on disk: row formats, generations written by the ingest and read by the API."""
