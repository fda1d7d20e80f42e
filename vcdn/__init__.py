"""vcdn: an open-source video CDN modelled on Open Connect."""

__version__ = "0.1.0"
