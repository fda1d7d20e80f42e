"""Hit-path benchmark: our HTTP servers against nginx on the same files, with wrk."""
