"""The aiohttp web server: health check, join page and the signaling websocket."""
