"""The ingest: downloads the provider's catalog into a new generation, on a schedule and on demand."""
