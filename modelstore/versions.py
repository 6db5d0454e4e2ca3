"""Semantic versions (`v1.2.0`) and model names: parsing, validation, ordering."""
from __future__ import annotations

import re

from modelstore.errors import InvalidName

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
VERSION_PATTERN = re.compile(r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?$")


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InvalidName(
            f"invalid model name {name!r}: use 1-64 lowercase letters, digits, '_' or '-', starting with a letter or digit"
        )
    return name


def check_version(version: str) -> str:
    if not VERSION_PATTERN.match(version):
        raise InvalidName(f"invalid version {version!r}: use a semantic version such as v1.2.0")
    return version


def version_key(version: str) -> tuple:
    """Sort key: numeric parts compared as numbers; a pre-release sorts before its release (semver rule)."""
    match = VERSION_PATTERN.match(version)
    if not match:
        raise InvalidName(f"invalid version {version!r}: use a semantic version such as v1.2.0")
    major, minor, patch, pre = match.groups()
    pre_key: tuple = (1,) if pre is None else (0, *(_pre_part(p) for p in pre.split(".")))
    return int(major), int(minor), int(patch), pre_key


def _pre_part(part: str) -> tuple:
    return (0, int(part), "") if part.isdigit() else (1, 0, part)


def sort_versions(versions: list[str]) -> list[str]:
    return sorted((v for v in versions if VERSION_PATTERN.match(v)), key=version_key)
