"""The intra-op workers: hot (spinning) inside a run, cooled when it ends, same results with OS-lock waits."""

from __future__ import annotations

import os
import threading
import time

import pytest

from onnxforge.runtime import _pool
from onnxforge.runtime.threads import blas_takes_the_threads, blas_threads, parallel


def _worker_names(parts: int) -> list[str]:
    names: list[str] = []
    lock = threading.Lock()

    def task() -> None:
        with lock:
            names.append(threading.current_thread().name)

    parallel([task] * parts)
    return names


def test_a_worker_spins_inside_a_run_and_is_cooled_when_the_run_ends() -> None:
    with blas_threads(2):
        assert sorted(_worker_names(2)) == ["MainThread", "onnxforge-intra-op"]
        hot_inside = [worker.hot for worker in _pool._idle]
        assert sorted(_worker_names(2)) == ["MainThread", "onnxforge-intra-op"]  # a hot worker takes tasks
    assert True in hot_inside
    assert not any(worker.hot for worker in _pool._idle)


@pytest.mark.skipif(_pool._SPIN is None, reason="libc has no pthread spin locks here")
def test_a_cooled_worker_burns_no_cpu_between_runs() -> None:
    with blas_threads(2):
        _worker_names(2)
        start = time.process_time()
        time.sleep(0.2)
        spinning = time.process_time() - start
    start = time.process_time()
    time.sleep(0.2)
    cooled = time.process_time() - start
    # The hot worker held a core while the caller slept (a quarter of the window at least: on a loaded
    # machine, e.g. beside the other pytest-xdist worker, it shares the core), the cooled one does not.
    assert spinning > 0.05
    assert cooled < min(0.05, spinning / 2)


def test_blas_taking_the_threads_cools_the_workers_first() -> None:
    with blas_threads(2):
        _worker_names(2)
        assert any(worker.hot for worker in _pool._idle)
        with blas_takes_the_threads():
            assert not any(worker.hot for worker in _pool._idle)
            assert _worker_names(2) == ["MainThread", "MainThread"]  # kernels do not split meanwhile


def test_workers_on_os_locks_run_the_same_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pool, "_SPIN", None)
    worker = _pool.Worker()
    assert isinstance(worker._go, _pool._LockSignal)
    results: list[int] = []
    for batch in range(3):
        worker.start([lambda batch=batch: results.append(batch)])
        worker.join()
    worker.cool()
    worker.start([lambda: results.append(99)])  # wakes from its OS wait again
    worker.join()
    worker.cool()
    assert results == [0, 1, 2, 99]
    assert worker.hot is False


def test_a_failing_task_leaves_the_hot_worker_usable() -> None:
    worker = _pool.Worker()

    def fails() -> None:
        raise RuntimeError("part failed")

    worker.start([fails])
    worker.join()
    assert isinstance(worker.error, RuntimeError)
    done: list[bool] = []
    worker.start([lambda: done.append(True)])
    worker.join()
    worker.cool()
    assert worker.error is None
    assert done == [True]


@pytest.mark.skipif(_pool._GETCPU is None or len(_pool._ALLOWED) < 2, reason="needs sched_getcpu and 2 CPUs")
def test_inside_a_run_the_caller_and_the_worker_are_pinned_to_different_cpus() -> None:
    before = os.sched_getaffinity(0)
    cpus: dict[str, int] = {}

    def where(name: str) -> None:
        cpus[name] = _pool.current_cpu()

    with blas_threads(2):
        assert os.sched_getaffinity(0) == before  # not before the run's first hand-off (small runs never pay it)
        parallel([lambda: where("caller"), lambda: where("worker")])
        pinned = os.sched_getaffinity(0)
    assert len(pinned) == 1
    assert cpus["caller"] in pinned
    assert cpus["worker"] != cpus["caller"]
    assert os.sched_getaffinity(0) == before  # the caller's affinity comes back after the run
    with blas_threads(1):
        parallel([lambda: where("caller"), lambda: where("worker")])
        assert os.sched_getaffinity(0) == before  # one thread: nothing to pin


def test_with_more_threads_than_cpus_the_workers_do_not_spin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pool, "SPIN_CPUS", 1)  # as on a one-CPU machine asked for 2 threads
    with blas_threads(2):
        assert sorted(_worker_names(2)) == ["MainThread", "onnxforge-intra-op"]
        assert not any(worker.hot for worker in _pool._idle)
        assert sorted(_worker_names(2)) == ["MainThread", "onnxforge-intra-op"]  # a cooled worker still works


@pytest.mark.skipif(_pool._GETCPU is None or len(_pool._ALLOWED) < 2, reason="needs sched_getcpu and 2 CPUs")
def test_a_concurrent_run_is_not_pinned_and_its_workers_do_not_spin() -> None:
    seen: dict[str, object] = {}
    inside = threading.Event()
    release = threading.Event()

    def other_run() -> None:
        inside.wait()
        with blas_threads(2):
            seen["affinity"] = os.sched_getaffinity(0)
            seen["names"] = sorted(_worker_names(2))
            seen["own"] = threading.current_thread().name
            seen["hot"] = [worker.hot for worker in _pool._idle]
        release.set()

    thread = threading.Thread(target=other_run)
    thread.start()
    with blas_threads(2):
        parallel([lambda: None, lambda: None])  # the first hand-off pins the run's caller
        assert len(os.sched_getaffinity(0)) == 1  # this run holds the pin
        inside.set()
        release.wait(10)
    thread.join(10)
    assert seen["affinity"] == _pool._ALLOWED  # the second run left its thread's CPUs alone
    assert seen["names"] == sorted([seen["own"], "onnxforge-intra-op"])  # it still splits its work
    assert not any(seen["hot"])  # its worker went back to an OS wait after the hand-off
