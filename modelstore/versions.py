"""Semantic versions (`v1.2.0`) and model names: parsing, validation, ordering.

Both are matched whole (re.fullmatch: `$` would also accept a trailing newline) and bounded in length, since both
become directory names and URL path segments."""
from __future__ import annotations

import re

from modelstore.errors import InvalidName

MAX_NAME_CHARS = 64
MAX_VERSION_CHARS = 64
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
VERSION_PATTERN = re.compile(r"v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-([0-9A-Za-z.-]+))?")


def shown(text: str, limit: int = MAX_VERSION_CHARS) -> str:
    """repr() of a name for an error message (a path segment, a header, a CLI argument), cut to `limit` characters with
    an ellipsis, so a megabyte of input gives a one-line message."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidName(
            f"invalid model name {shown(name, MAX_NAME_CHARS) if isinstance(name, str) else repr(name)}: use 1-64 "
            "lowercase letters, digits, '_' or '-', starting with a letter or digit"
        )
    return name


def is_version(text: str) -> bool:
    return isinstance(text, str) and len(text) <= MAX_VERSION_CHARS and VERSION_PATTERN.fullmatch(text) is not None


def check_version(version: str) -> str:
    if not is_version(version):
        text = shown(version, MAX_VERSION_CHARS) if isinstance(version, str) else repr(version)
        raise InvalidName(f"invalid version {text}: use a semantic version such as v1.2.0, at most "
                          f"{MAX_VERSION_CHARS} characters")
    return version


def version_key(version: str) -> tuple:
    """Sort key: numeric parts compared as numbers; a pre-release sorts before its release (semver rule)."""
    major, minor, patch, pre = VERSION_PATTERN.fullmatch(check_version(version)).groups()
    pre_key: tuple = (1,) if pre is None else (0, *(_pre_part(p) for p in pre.split(".")))
    return int(major), int(minor), int(patch), pre_key


def _pre_part(part: str) -> tuple:
    return (0, int(part), "") if part.isascii() and part.isdigit() else (1, 0, part)


def sort_versions(versions: list[str]) -> list[str]:
    return sorted((v for v in versions if is_version(v)), key=version_key)
