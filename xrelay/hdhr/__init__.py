"""HDHomeRun tuner emulation for Plex, Jellyfin and Emby."""
