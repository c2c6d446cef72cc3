"""The live relay: channels, upstreams, fan-out, provider slots and status clips."""
