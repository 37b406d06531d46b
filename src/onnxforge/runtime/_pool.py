"""The intra-op worker threads behind :func:`onnxforge.runtime.threads.parallel`, and how they wait.

Inside a run a worker that has no task *spins* instead of sleeping in the OS, as ORT's pool does. Measured
on these 2-vCPU VMs, a hand-off to a thread blocked on a ``threading.Lock`` cost 15-50 us, and, worse, the
woken thread often shared the caller's core: two halves of a 3x3 conv (copy + GEMM, ~340 us each) took as
long on two threads as on one (679 vs 677 us), against 368 us with a spinning worker. A spinning worker
keeps its own core, and a hand-off costs ~3 us.

The spinning happens in libc's ``pthread_spin_lock``, called through ctypes, which releases the GIL for
the call: the worker waits without holding the GIL and without a loop of Python. It is bounded by the run:
when the run ends (or a kernel hands the cores to BLAS instead) the idle workers are cooled, that is sent
back to a plain OS wait, so no core is burnt between runs. Where libc has no spin locks (macOS, Windows),
workers wait on OS locks as before.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def _libc_spin_functions() -> tuple[Any, Any, Any] | None:
    try:
        libc = ctypes.CDLL(None)
        functions = (libc.pthread_spin_init, libc.pthread_spin_lock, libc.pthread_spin_unlock)
    except (OSError, AttributeError, TypeError):
        return None
    for function in functions:
        function.restype = ctypes.c_int
    return functions


_SPIN = _libc_spin_functions()


class _SpinSignal:
    """A binary semaphore whose :meth:`wait` spins, GIL-free, until another thread :meth:`post`\\ s.

    A pthread spin lock has no owner, so "locked" means "not posted": ``post`` unlocks it, ``wait`` locks it
    again (spinning while it is locked), which consumes the post.
    """

    def __init__(self) -> None:
        assert _SPIN is not None
        init, self._lock, self._unlock = _SPIN
        # 64 bytes: a cache line of its own (pthread_spinlock_t itself is an int).
        self._word = (ctypes.c_int * 16)()
        self._address = ctypes.byref(self._word)
        if init(self._address, 0) != 0 or self._lock(self._address) != 0:
            raise OSError("pthread_spin_init failed")

    def post(self) -> None:
        self._unlock(self._address)

    def wait(self) -> None:
        self._lock(self._address)


class _LockSignal:
    """:class:`_SpinSignal`'s interface on an OS lock (waits sleep in the kernel)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def post(self) -> None:
        self._lock.release()

    def wait(self) -> None:
        self._lock.acquire()


def _signal() -> _SpinSignal | _LockSignal:
    return _SpinSignal() if _SPIN is not None else _LockSignal()


class Worker:
    """A daemon thread that runs one batch of tasks per :meth:`start`; the caller collects it with :meth:`join`.

    Cold, it sleeps in the OS until :meth:`start`. After a batch it stays hot: it spins for the next batch
    until :meth:`cool` puts it back to sleep.
    """

    def __init__(self) -> None:
        self._wake = threading.Lock()
        self._wake.acquire()
        self._go = _signal()
        self._done = _signal()
        self._tasks: Sequence[Callable[[], Any]] | None = ()
        self.hot = False
        self.error: BaseException | None = None
        threading.Thread(target=self._loop, name="onnxforge-intra-op", daemon=True).start()

    def start(self, tasks: Sequence[Callable[[], Any]]) -> None:
        self._tasks, self.error = tasks, None
        if self.hot:
            self._go.post()
        else:
            self.hot = True
            self._wake.release()

    def join(self) -> None:
        self._done.wait()

    def cool(self) -> None:
        """Stop spinning (an idle worker only): the worker sleeps in the OS until the next :meth:`start`."""
        if self.hot:
            self.hot = False
            self._tasks = None
            self._go.post()
            self._done.wait()  # the worker has left its spin: nothing of it runs after this returns

    def _loop(self) -> None:
        # errstate is per thread: the workers would otherwise warn where the run is silent.
        with np.errstate(all="ignore"):
            while True:
                self._wake.acquire()
                while (tasks := self._tasks) is not None:
                    try:
                        for task in tasks:
                            task()
                    except BaseException as error:  # re-raised in the calling thread
                        self.error = error
                    finally:
                        self._tasks = ()
                        self._done.post()
                    self._go.wait()
                self._done.post()  # acknowledges cool()


_idle: list[Worker] = []
_idle_lock = threading.Lock()


def take(count: int) -> list[Worker]:
    """``count`` workers for one caller: idle ones first (hot ones are at the end of the list), else new."""
    with _idle_lock:
        taken = [_idle.pop() for _ in range(min(count, len(_idle)))]
    return taken + [Worker() for _ in range(count - len(taken))]


def give_back(workers: Sequence[Worker]) -> None:
    with _idle_lock:
        _idle.extend(workers)


def cool_idle() -> None:
    """Send every idle hot worker back to an OS wait (workers busy in another run are cooled by its end)."""
    with _idle_lock:
        hot = [worker for worker in _idle if worker.hot]
        for worker in hot:
            worker.cool()
