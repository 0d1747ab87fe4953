"""``running_loop``: the running loop asked for once per append, cached per thread on 3.11."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import threading
import weakref

import pytest

from wking_device._running import running_loop


async def _both() -> tuple[asyncio.AbstractEventLoop, asyncio.AbstractEventLoop]:
    return running_loop(), asyncio.get_running_loop()


def test_it_is_the_running_loop_of_each_run_in_turn() -> None:
    # two loops one after the other in one thread (as asyncio.run twice): never the last one
    for _ in range(3):
        ours, asyncios = asyncio.run(_both())
        assert ours is asyncios


def test_no_loop_running_is_the_same_error_as_asyncio() -> None:
    asyncio.run(_both())  # a loop was running in this thread, and stopped
    with pytest.raises(RuntimeError, match="no running event loop"):
        running_loop()


def test_threads_running_loops_at_once_each_get_their_own() -> None:
    started = threading.Barrier(3)
    found: dict[int, bool] = {}

    async def meet(n: int) -> None:
        await asyncio.to_thread(started.wait, 10)  # all three loops run at this point
        for _ in range(100):
            assert running_loop() is asyncio.get_running_loop()
            await asyncio.sleep(0)
        found[n] = True

    threads = [threading.Thread(target=asyncio.run, args=(meet(n),)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert found == {0: True, 1: True, 2: True}


def test_a_loop_run_here_then_in_another_thread_is_not_this_threads() -> None:
    loop = asyncio.new_event_loop()
    running, release = threading.Event(), threading.Event()

    async def hold() -> None:
        running.set()
        await asyncio.to_thread(release.wait, 30)

    try:
        assert loop.run_until_complete(_both())[0] is loop  # this thread's last loop
        runner = threading.Thread(target=loop.run_until_complete, args=(hold(),))
        runner.start()
        try:
            assert running.wait(30)
            with pytest.raises(RuntimeError):  # `loop` runs, but in the other thread
                running_loop()
        finally:
            release.set()
            runner.join(30)
    finally:
        loop.close()


def test_a_child_forked_inside_a_coroutine_has_no_running_loop() -> None:
    # asyncio refuses the parent's loop in a forked child; so must the cache
    script = textwrap.dedent(
        """
        import asyncio, os, sys
        from wking_device._running import running_loop

        async def main():
            running_loop()  # cached in this thread
            pid = os.fork()
            if pid == 0:
                try:
                    running_loop()
                except RuntimeError:
                    os._exit(0)
                os._exit(3)
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

        sys.exit(asyncio.run(main()))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=60, check=False)
    assert done.returncode == 0


def test_a_loop_that_runs_itself_is_asked_for_each_time() -> None:
    # a loop class with its own run_forever may keep _thread_id set after it stops: never cached
    class OwnRun(asyncio.SelectorEventLoop):
        def run_forever(self) -> None:
            super().run_forever()
            self._thread_id = threading.get_ident()  # type: ignore[attr-defined]  # stale on purpose

    loop = OwnRun()
    try:
        assert loop.run_until_complete(_both())[0] is loop
        with pytest.raises(RuntimeError):
            running_loop()  # not the stopped loop, whatever its _thread_id says
    finally:
        loop._thread_id = None  # type: ignore[attr-defined]
        loop.close()


def test_loops_taking_turns_in_one_thread_unclosed_are_each_found() -> None:
    # pytest-asyncio style: a loop per test, an earlier one run again before it is closed
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        for loop in (first, second, first, second, second, first):
            assert loop.run_until_complete(_both()) == (loop, loop)
        with asyncio.Runner() as runner:  # asyncio.Runner's own loop, run twice
            assert runner.run(_both())[0] is runner.get_loop()
            assert runner.run(_both())[0] is runner.get_loop()
        assert first.run_until_complete(_both())[0] is first
    finally:
        first.close()
        second.close()


def test_the_last_loop_found_is_not_kept_alive() -> None:
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_both())  # cached (on 3.11) as this thread's last loop
    loop.close()
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    assert gone() is None
    with pytest.raises(RuntimeError, match="no running event loop"):
        running_loop()


def test_a_loop_run_in_a_worker_thread_of_another_loop_is_that_threads() -> None:
    # a loop in an executor thread of a running loop, both running at once, each caching
    def worker() -> tuple[asyncio.AbstractEventLoop, asyncio.AbstractEventLoop]:
        return asyncio.run(_both())

    async def outer() -> None:
        for _ in range(3):
            ours, asyncios = await _both()
            inner = await asyncio.get_running_loop().run_in_executor(None, worker)
            assert ours is asyncios is asyncio.get_running_loop()
            assert inner[0] is inner[1]
            assert inner[0] is not ours

    asyncio.run(outer())
