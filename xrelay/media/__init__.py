"""Movies, series episodes, catch-up and HLS, proxied per viewer."""
