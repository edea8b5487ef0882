"""The aiohttp application: HLS delivery, channel pages, JSON API, metrics."""
