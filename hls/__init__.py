"""HLS packaging: pure segmenting and playlist decisions, the PyAV muxer, storage on disk."""
