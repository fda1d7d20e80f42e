"""The origin content server (`vcdn origin`): serves the packager's content store."""
