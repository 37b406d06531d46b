"""Intra-op threads: per-run BLAS limits through threadpoolctl, and a worker pool for kernels that split work.

``intra_op_num_threads`` takes effect twice inside a run:

- BLAS (OpenBLAS under NumPy) is limited to that many threads (0, ORT's default, leaves BLAS as it is and
  uses every core for the pool below);
- a kernel whose work splits into independent parts (bands of a convolution's output, groups of channels)
  hands them to :func:`parallel`, which runs them on that many threads at once. NumPy releases the GIL
  inside its loops and BLAS calls, so the parts really run side by side, and the memory-bound copies of
  im2col or a depthwise conv use every core too, not only the GEMM. BLAS is single-threaded throughout
  the run (see :func:`blas_threads`), so the parts do not oversubscribe the cores. Between hand-offs inside
  a run the pool's workers spin rather than sleep (see ``_pool``), as ORT's do.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from onnxforge.runtime import _pool

_controller: ThreadpoolController | None = None
_controller_lock = threading.Lock()
# Below this many multiply-adds a product stays in the calling thread (see _im2col.PARALLEL_MIN_MACS).
_MATMUL_PARALLEL_MIN_MACS = 6_000_000
# How many threads the kernels of the current run may use; 1 outside a run (and in kernels' own threads).
_WORKERS: contextvars.ContextVar[int] = contextvars.ContextVar("onnxforge_intra_op_workers", default=1)


class _LazyPin:
    """A run's caller pinning (see _pool.pin_caller), done at the run's first hand-off to a worker: a run that
    never splits its work (a small model) does not pay the two affinity calls (~6 of its ~12 us per run)."""

    __slots__ = ("restore", "tried")

    def __init__(self) -> None:
        self.tried = False
        self.restore: set[int] | None = None

    def spinning(self) -> bool:
        """Pin the caller if not tried yet; whether the run's workers may spin (its caller is pinned)."""
        if not self.tried:
            self.tried = True
            self.restore = _pool.pin_caller()
        return self.restore is not None


# The current run's pinning, None where its workers may not spin (one part, or more parts than CPUs).
_PIN: contextvars.ContextVar[_LazyPin | None] = contextvars.ContextVar("onnxforge_run_pin", default=None)


def _get_controller() -> ThreadpoolController:
    # Building the controller scans the loaded libraries (~ms); do it once per process.
    global _controller
    with _controller_lock:
        if _controller is None:
            _controller = ThreadpoolController()
        return _controller


def _default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def blas_threads(count: int) -> Iterator[None]:
    """Inside the block, :func:`parallel` uses ``count`` threads (``0``, ORT's default, means all cores) and
    BLAS runs single-threaded.

    Why not let BLAS thread too: after each multithreaded call OpenBLAS's helper threads busy-wait for the
    next one, holding a core that the pool's other part (or the next NumPy loop) needs. Measured on
    ResNet-18 at 2 threads, the two halves of every conv waited ~40% of their time for a core, and the
    run was slower than at 1 thread. So big products are split by the kernels themselves (conv bands,
    :func:`matmul` blocks), each part a single-threaded BLAS call.
    """
    parts = count if count > 0 else _default_workers()
    pin = _LazyPin() if 1 < parts <= _pool.SPIN_CPUS else None
    token = _PIN.set(pin)
    try:
        with _workers_and_blas(parts, blas=1):
            yield
    finally:
        if parts > 1:
            _pool.cool_idle()  # no worker spins between runs (see _pool)
        _PIN.reset(token)
        if pin is not None and pin.restore is not None:
            _pool.unpin_caller(pin.restore)


@contextlib.contextmanager
def _workers_and_blas(parts: int, blas: int | None) -> Iterator[None]:
    """Inside the block, kernels split into ``parts`` parts and every BLAS library uses ``blas`` threads
    (``None``: as it is); afterwards both are as they were."""
    token = _WORKERS.set(parts)
    restore = []
    for library in _blas_controllers() if blas is not None else ():
        threads = library.get_num_threads()
        if threads != blas:
            library.set_num_threads(blas)
            restore.append((library, threads))
    try:
        yield
    finally:
        for library, threads in restore:
            library.set_num_threads(threads)
        _WORKERS.reset(token)


# threadpoolctl's limit() context re-reads every library's state on each entry (~25-50 us a run), so the
# BLAS libraries are looked up once. (OpenBLAS 0.3.31 lets a thread other than the main one lower its thread
# count but not raise it: a run from such a thread, as under limit(), leaves BLAS single-threaded after it.)
_blas_libraries: list[Any] | None = None


def _blas_controllers() -> list[Any]:
    global _blas_libraries
    if _blas_libraries is None:
        _blas_libraries = [lib for lib in _get_controller().lib_controllers if lib.user_api == "blas"]
    return _blas_libraries


@contextlib.contextmanager
def blas_takes_the_threads() -> Iterator[None]:
    """Inside a run's block, BLAS itself uses the run's intra-op threads and kernels do not split their work.

    For a latency-bound chain of small products that cannot be split into parts worth a hand-off (an RNN's
    per-step ``H @ R``, M = batch): OpenBLAS splits each product on its own, spin-waiting threads. In a
    whole run that spinning costs the other kernels their core (see :func:`blas_threads`), but through one
    kernel's loop of back-to-back GEMMs there is nothing else to run. lstm_b8 at 2 threads, in-process A/B:
    0.83x the time of a single BLAS thread. Outside a run (one worker) this changes nothing. OpenBLAS ignores
    a raise from a thread other than the main one, which then keeps one BLAS thread.
    """
    count = workers()
    if count > 1:
        _pool.cool_idle()  # a spinning worker would take a core from BLAS's threads
    with _workers_and_blas(1, blas=count if count > 1 else None):
        yield


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Inside the block, kernels in this thread do not split their work (:func:`workers` is 1)."""
    token = _WORKERS.set(1)
    try:
        yield
    finally:
        _WORKERS.reset(token)


def workers() -> int:
    """How many parts a kernel should split its work into (1: do it all in the calling thread)."""
    return _WORKERS.get()


def parallel(tasks: Sequence[Callable[[], Any]]) -> None:
    """Run independent ``tasks`` (each writes its own part of a result) on the run's intra-op threads.

    Task ``i`` runs in part ``i % parts``; part 0 is the calling thread. The call returns when all are done
    and re-raises the first exception. With one worker (or one task) this is a plain loop.
    """
    parts = min(workers(), len(tasks))
    if parts <= 1:
        for task in tasks:
            task()
        return
    # More than one worker only inside blas_threads(), where BLAS is already single-threaded. Concurrent
    # runs (or a nested call) take their own idle workers, so a worker never has two callers.
    helpers, spinning = _start_helpers([tasks[index::parts] for index in range(1, parts)])
    try:
        for task in tasks[::parts]:
            task()
    finally:
        error = _finish_helpers(helpers, spinning)
    if error is not None:
        raise error


@contextlib.contextmanager
def alongside(tasks: Sequence[Callable[[], Any]]) -> Iterator[None]:
    """Run ``tasks``, one after the other, on an intra-op worker while the caller runs the block; leaving
    the block waits for them and re-raises the first exception. Only for runs with more than one worker
    (:func:`workers`); the block must not rely on a task having finished unless the task says so itself."""
    if workers() <= 1:
        raise RuntimeError("alongside() needs a run with more than one intra-op thread")
    helpers, spinning = _start_helpers([tasks])
    try:
        yield
    finally:
        error = _finish_helpers(helpers, spinning)
    if error is not None:
        raise error


def _start_helpers(batches: list[Sequence[Callable[[], Any]]]) -> tuple[list[_pool.Worker], bool]:
    helpers = _pool.take(len(batches))
    # Workers spin (pinned) only in the run that pinned its caller, and while each part has a CPU of its own.
    pin = _PIN.get()
    spinning = pin is not None and len(batches) + 1 <= _pool.SPIN_CPUS and pin.spinning()
    caller_cpu = _pool.current_cpu() if spinning and not all(helper.hot for helper in helpers) else -1
    for index, (helper, batch) in enumerate(zip(helpers, batches)):
        helper.start(batch, caller_cpu, index)
    return helpers, spinning


def _finish_helpers(helpers: list[_pool.Worker], spinning: bool) -> BaseException | None:
    """Wait for ``helpers`` (the parts write into shared buffers: never return while one still runs), give
    them back; returns the first error of theirs."""
    for helper in helpers:
        helper.join()
    if not spinning:
        for helper in helpers:
            helper.cool()  # a spinning worker would take the core of another thread
    _pool.give_back(helpers)
    return next((helper.error for helper in helpers if helper.error is not None), None)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.matmul(a, b)``, cut into row blocks (or column blocks, for few rows) across the intra-op threads
    when it is big enough; batched operands are cut along their leading batch axis."""
    parts = workers()
    if parts <= 1 or a.ndim < 2 or b.ndim < 2 or a.dtype != b.dtype or a.dtype.kind != "f":
        return np.matmul(a, b)
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    # np.prod of broadcast_shapes costs ~5 us, more than a small product itself: only for batched operands.
    batch = (
        1
        if a.ndim == 2 and b.ndim == 2
        else int(np.prod(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), dtype=np.int64))
    )
    if batch * m * k * n < _MATMUL_PARALLEL_MIN_MACS:
        return np.matmul(a, b)
    if a.ndim == 2 and b.ndim == 2:
        out = np.empty((m, n), dtype=a.dtype)
        if m >= 32 * parts:
            cuts = split(m, parts, minimum=16)
            parallel([lambda r0=r0, r1=r1: np.matmul(a[r0:r1], b, out=out[r0:r1]) for r0, r1 in cuts])
        else:
            cuts = split(n, parts, minimum=64)
            parallel([lambda c0=c0, c1=c1: np.matmul(a, b[:, c0:c1], out=out[:, c0:c1]) for c0, c1 in cuts])
        return out
    if a.shape[:-2] == b.shape[:-2] and a.ndim == b.ndim and a.shape[0] >= parts:
        out = np.empty((*a.shape[:-1], n), dtype=a.dtype)
        cuts = split(a.shape[0], parts)
        parallel([lambda i0=i0, i1=i1: np.matmul(a[i0:i1], b[i0:i1], out=out[i0:i1]) for i0, i1 in cuts])
        return out
    return np.matmul(a, b)


def split(total: int, parts: int, minimum: int = 1) -> list[tuple[int, int]]:
    """``[0, total)`` cut into at most ``parts`` near-equal ``(start, stop)`` ranges of at least ``minimum``."""
    parts = max(1, min(parts, total // max(1, minimum)))
    bounds = [total * i // parts for i in range(parts + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def current_blas_threads() -> int:
    """The smallest thread count any loaded BLAS currently uses (for tests and reports)."""
    infos = [info["num_threads"] for info in ThreadpoolController().info() if info.get("user_api") == "blas"]
    return min(infos) if infos else 1
