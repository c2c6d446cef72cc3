"""The Xtream-compatible API: player_api.php, get.php, xmltv.php and the logo proxy, served from the catalog."""
