"""Start a coroutine at once, inside the calling callback, rather than as a task on the loop's next turn (Python 3.12's
eager tasks, which 3.11 lacks). Most data-plane requests never wait on anything (the model runs inline), so started
this way they need no task at all; one that does wait is handed to a task at the point where it waits.

A coroutine started here runs its first steps with no current task: code on the way must not need one (anyio's
thread helpers do; loop.run_in_executor does not)."""
from __future__ import annotations

import types
from collections.abc import Coroutine, Generator
from typing import Any


def start(coroutine: Coroutine[Any, Any, None]) -> tuple[bool, object]:
    """Run `coroutine` until it finishes or first waits: (True, None) when it finished, else (False, what it waits on)
    for `resume`. Its exceptions propagate."""
    try:
        awaited = coroutine.send(None)
    except StopIteration:
        return True, None
    return False, awaited


async def resume(coroutine: Coroutine[Any, Any, None], awaited: object) -> None:
    """The rest of a coroutine `start` left waiting on `awaited`, to be run as a task."""
    await _continued(coroutine, awaited)


@types.coroutine
def _continued(coroutine: Coroutine[Any, Any, None], awaited: object) -> Generator[object, object, None]:
    # A hand-written `yield from` that does not restart the coroutine: the task waits on what the coroutine waits on,
    # then what the task sends (a wake-up) or throws (a cancellation) goes on to the coroutine.
    while True:
        try:
            value = yield awaited
        except BaseException as exc:  # noqa: BLE001 - passed on, not handled
            step, argument = coroutine.throw, exc
        else:
            step, argument = coroutine.send, value
        try:
            awaited = step(argument)
        except StopIteration:
            return
