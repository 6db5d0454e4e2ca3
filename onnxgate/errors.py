"""Errors of the command line itself (not of the store): bad arguments, unreadable input files."""
from __future__ import annotations


class UsageError(Exception):
    """A missing or unreadable input file, a bad metrics file, arguments that do not fit together."""
