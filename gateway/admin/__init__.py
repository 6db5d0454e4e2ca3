"""The ops API: every store operation over authenticated HTTP at /admin/v1/ (tokens.py: the tokens file; auth.py:
bearer authentication and roles; requests.py: the bodies; routes.py: the endpoints; server.py: its own port)."""
