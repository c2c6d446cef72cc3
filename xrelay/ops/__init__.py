"""Operations: /status, /metrics, /admin, and logging."""
