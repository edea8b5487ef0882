"""rtmpd: RTMP ingest with secret stream keys, HLS out under public names."""
