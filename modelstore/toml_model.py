"""A TOML file at the store root read into a pydantic model (policy.toml, retrain.toml), with errors an operator can
act on: the file, the line and the dotted field of the first problem, and for a typo the field it was likely meant
to be."""
from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


def parse_toml_model(raw: bytes, source: str, model: type[Model], error: type[Exception],
                     suggestion: Callable[[tuple[str, ...]], str]) -> Model:
    """`raw` validated as `model`; `error` names `source`, the line and the field of the first problem (an unknown
    field first: its typo explains the "field required" it causes), with `suggestion(location)` after an unknown
    field's name."""
    try:
        text = raw.decode("utf-8")
        document = tomllib.loads(text)
    except UnicodeDecodeError:
        raise error(f"{source}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source}: not valid TOML: {exc}") from None
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        errors = exc.errors()
        first = next((one for one in errors if one["type"] == "extra_forbidden"), errors[0])
        location = tuple(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown field" + suggestion(location)
        line = line_of(text, location)
        where = f"line {line}: " if line else ""
        raise error(f"{source}: {where}{'.'.join(location)}: {message}") from None


_TABLE = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]")
_ARRAY_TABLE = re.compile(r"^\s*\[\[\s*([^\]]+?)\s*\]\]")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.\- "']+?)\s*=""")


def line_of(text: str, location: tuple[str, ...]) -> int | None:
    """The 1-based line that defines `location` (a pydantic error's path): the key's line (inside its table, or as a
    dotted key), else the header of the table it names or is in; None when not found."""
    table: tuple[str, ...] = ()
    header_line: int | None = None
    array_counts: dict[tuple[str, ...], int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        array_header = _ARRAY_TABLE.match(line)
        header = array_header or _TABLE.match(line)
        if header:
            table = _dotted(header.group(1))
            if array_header:  # [[name]]: the n-th one is element n of the array, as pydantic's path names it
                index = array_counts[table] = array_counts.get(table, -1) + 1
                table = (*table, str(index))
            if table[:len(location)] == location:
                return number
            if header_line is None and location[:len(table)] == table:
                header_line = number
            continue
        key = _KEY.match(line)
        if key:
            path = table + _dotted(key.group(1))
            if path[:len(location)] == location or (location[:len(path)] == path and len(path) > len(table)):
                return number
    return header_line


def _dotted(name: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in name.split("."))
