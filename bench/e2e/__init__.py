"""HLS playback through the whole CDN (steering → appliance) against nginx serving the
same files: concurrent players, segments per second and fetch latency."""
