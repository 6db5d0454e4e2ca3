"""gateway/eager.py: a coroutine started in a plain callback, finished there or carried on by a task where it waits."""
from __future__ import annotations

import asyncio

import pytest

from gateway import eager


def test_a_coroutine_that_never_waits_finishes_inside_start():
    steps = []

    async def answer() -> None:
        steps.append("ran")

    finished, awaited = eager.start(answer())
    assert (finished, awaited, steps) == (True, None, ["ran"])


def test_its_exception_reaches_the_caller_of_start():
    async def broken() -> None:
        raise LookupError("no such thing")

    with pytest.raises(LookupError, match="no such thing"):
        eager.start(broken())


def test_a_coroutine_that_waits_goes_on_in_a_task_with_what_it_waited_for():
    async def scenario() -> list[object]:
        loop = asyncio.get_running_loop()
        steps: list[object] = []
        first, second = loop.create_future(), loop.create_future()

        async def answer() -> None:
            steps.append("before")
            steps.append(await first)
            try:
                await second
            except ValueError as exc:
                steps.append(f"caught {exc}")
            await asyncio.sleep(0)  # a bare yield, as asyncio.sleep(0) makes
            steps.append("after")

        coroutine = answer()
        finished, awaited = eager.start(coroutine)
        assert not finished and awaited is first and steps == ["before"]
        task = loop.create_task(eager.resume(coroutine, awaited))
        await asyncio.sleep(0)
        assert not task.done()
        first.set_result("first's result")
        await asyncio.sleep(0)
        second.set_exception(ValueError("second failed"))
        await asyncio.wait_for(task, timeout=30)
        return steps

    assert asyncio.run(scenario()) == ["before", "first's result", "caught second failed", "after"]


def test_cancelling_the_task_cancels_the_coroutine_where_it_waits():
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        steps: list[str] = []
        never = loop.create_future()

        async def answer() -> None:
            try:
                await never
            except asyncio.CancelledError:
                steps.append("cancelled")
                raise

        coroutine = answer()
        _, awaited = eager.start(coroutine)
        task = loop.create_task(eager.resume(coroutine, awaited))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return steps

    assert asyncio.run(scenario()) == ["cancelled"]
