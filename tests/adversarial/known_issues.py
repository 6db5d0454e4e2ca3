"""Inputs the generated runs leave out because another branch of issue 11 fixes what they break. Each predicate names
the bug and the branch; each bug is also pinned by an xfail(strict=True) case (test_bodies.py, test_package_fuzz.py).
Once that branch is merged, delete the predicate here and the marker there."""
from __future__ import annotations

import errno
from collections.abc import Callable


def v2_parameters_not_an_object(body: object) -> bool:
    """h-edge: a v2 input's or requested output's `parameters` that is not an object (a string, a number, null) can
    answer 500 (AttributeError in gateway/v2.py)."""
    if not isinstance(body, dict):
        return False
    items = [i for key in ("inputs", "outputs") if isinstance(body.get(key), list) for i in body[key]]
    return any(isinstance(i, dict) and "parameters" in i and not isinstance(i["parameters"], dict) for i in items)


def over_long_name(error: BaseException) -> bool:
    """h-storelimits: an over-long version (or name) reaches the file system and fails with ENAMETOOLONG."""
    return isinstance(error, OSError) and error.errno == errno.ENAMETOOLONG


BODIES_FIXED_ELSEWHERE: tuple[Callable[[object], bool], ...] = (v2_parameters_not_an_object,)
IMPORT_ERRORS_FIXED_ELSEWHERE: tuple[Callable[[BaseException], bool], ...] = (over_long_name,)


def body_fixed_elsewhere(body: object) -> bool:
    return any(known(body) for known in BODIES_FIXED_ELSEWHERE)


def import_error_fixed_elsewhere(error: BaseException) -> bool:
    return any(known(error) for known in IMPORT_ERRORS_FIXED_ELSEWHERE)
