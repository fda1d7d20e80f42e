"""The control plane's web pages: a player and an operator dashboard (static files)."""
