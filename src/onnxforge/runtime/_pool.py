"""The intra-op worker threads behind :func:`onnxforge.runtime.threads.parallel`, and how they wait.

Inside a run a worker that has no task *spins* instead of sleeping in the OS, as ORT's pool does. Measured
on these 2-vCPU VMs, a hand-off to a thread blocked on a ``threading.Lock`` cost 15-50 us, and, worse, the
woken thread often shared the caller's core: two halves of a 3x3 conv (copy + GEMM, ~340 us each) took as
long on two threads as on one (679 vs 677 us), against 368 us with a spinning worker. A spinning worker
keeps its own core, and a hand-off costs ~3 us. For that to hold, a run at more than one thread pins its
caller (at its first hand-off) to the CPU it is on and each worker, when it wakes, to another one
(:func:`pin_caller`); both get their affinity back when the run ends.

The spinning happens in libc's ``pthread_spin_lock``, called through ctypes, which releases the GIL for
the call: the worker waits without holding the GIL and without a loop of Python. It is bounded by the run:
when the run ends (or a kernel hands the cores to BLAS instead) the idle workers are cooled, that is sent
back to a plain OS wait, so no core is burnt between runs. Where libc has no spin locks (macOS, Windows),
workers wait on OS locks as before.
"""

from __future__ import annotations

import ctypes
import os
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


def _libc_getcpu() -> Any:
    if _SPIN is None or not hasattr(os, "sched_setaffinity"):
        return None
    try:
        getcpu = ctypes.CDLL(None).sched_getcpu
    except (OSError, AttributeError, TypeError):
        return None
    getcpu.restype, getcpu.argtypes = ctypes.c_int, []
    return getcpu


_GETCPU = _libc_getcpu()
# The CPUs the process may use, read before any thread is pinned: workers are created inside runs, where
# they would inherit the pinned caller's single CPU.
_ALLOWED: frozenset[int] = frozenset(os.sched_getaffinity(0)) if _GETCPU is not None else frozenset()
# Workers spin between hand-offs only while the caller and its workers have a CPU each (no more parts than
# this); otherwise they go back to an OS wait after every hand-off. 0 where they cannot spin at all.
SPIN_CPUS = len(_ALLOWED) if _SPIN is not None else 0


def current_cpu() -> int:
    """The CPU the calling thread runs on (-1 where that cannot be known, or workers are not pinned)."""
    return int(_GETCPU()) if _GETCPU is not None else -1


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
        self._placement = (-1, 0)
        self.hot = False
        self.error: BaseException | None = None
        threading.Thread(target=self._loop, name="onnxforge-intra-op", daemon=True).start()

    def start(self, tasks: Sequence[Callable[[], Any]], caller_cpu: int = -1, ordinal: int = 0) -> None:
        """Run ``tasks``; a cold worker first pins itself to a CPU other than ``caller_cpu`` (the
        ``ordinal``-th such CPU), so that it never spins on the caller's core."""
        self._tasks, self.error = tasks, None
        if self.hot:
            self._go.post()
        else:
            self.hot = True
            self._placement = (caller_cpu, ordinal)
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
                allowed = self._pin()
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
                if allowed is not None:
                    _set_affinity(allowed)
                self._done.post()  # acknowledges cool()

    def _pin(self) -> set[int] | None:
        """Pin this thread to a CPU other than the caller's; returns the affinity to restore (None: not
        pinned). A woken thread is often placed on its waker's CPU (these VMs' kernels pack threads onto
        few vCPUs), where a spinning worker would share the caller's core: unpinned, a run right after a
        pause took 3.5x as long as with OS waits (squeezenet, 2 threads)."""
        caller_cpu, ordinal = self._placement
        if caller_cpu < 0:
            return None
        others = sorted(_ALLOWED - {caller_cpu})
        if not others or not _set_affinity({others[ordinal % len(others)]}):
            return None
        return set(_ALLOWED)


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


def _set_affinity(cpus: set[int]) -> bool:
    try:
        os.sched_setaffinity(0, cpus)  # 0: the calling thread (Linux)
    except OSError:  # e.g. the process's CPUs changed since import, or a sandbox forbids it
        return False
    return True


def pin_caller() -> set[int] | None:
    """Pin the calling thread to the CPU it is on for the run, whose workers spin pinned to the other CPUs;
    returns the affinity to give back (None: nothing was changed).

    Without it the kernel of these VMs moved the caller onto the CPU of the spinning worker now and then
    (it packs threads onto few vCPUs), and the two shared that core in 4-8 ms time slices: squeezenet at 2
    threads took 47-61 ms a run instead of 11. In-process A/B against OS-lock workers (no spinning, no
    pinning) at 2 threads: squeezenet 0.92x, resnet18_b1 0.90x, mobilenetv2 0.94x, gpt_b1 0.86x the time;
    one run after a 0.2 s pause: squeezenet 0.90x, gpt_b1 0.71x.
    """
    if not _pinned_run.acquire(blocking=False):
        return None  # another run is pinned and spinning: this one runs unpinned, its workers on OS waits
    cpu = current_cpu()
    allowed = os.sched_getaffinity(0) if cpu >= 0 else set()
    if len(allowed) < 2 or cpu not in allowed or not _set_affinity({cpu}):
        _pinned_run.release()
        return None
    return allowed


def unpin_caller(allowed: set[int]) -> None:
    _set_affinity(allowed)
    _pinned_run.release()


# One run at a time pins its caller and lets its workers spin: two concurrent runs pinned to one CPU would
# share it for their whole length.
_pinned_run = threading.Lock()
