"""The live relay: one provider connection per channel, fanned out to every viewer with back-pressure."""
