"""Foundations every part uses: configuration, secret scrubbing, users, Deferred and JSON helpers."""
