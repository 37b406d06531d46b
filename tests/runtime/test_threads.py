"""The intra-op pool: work splitting, BLAS limits inside and after a parallel section, errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from onnxforge.runtime.threads import (
    alongside,
    blas_takes_the_threads,
    blas_threads,
    current_blas_threads,
    matmul,
    parallel,
    split,
    workers,
)


@pytest.mark.parametrize(
    ("total", "parts", "minimum", "expected"),
    [
        (10, 2, 1, [(0, 5), (5, 10)]),
        (7, 3, 1, [(0, 2), (2, 4), (4, 7)]),
        (3, 8, 1, [(0, 1), (1, 2), (2, 3)]),
        (40, 4, 16, [(0, 20), (20, 40)]),
        (5, 2, 16, [(0, 5)]),
        (0, 2, 1, []),
    ],
)
def test_split_covers_the_range_in_near_equal_parts(
    total: int, parts: int, minimum: int, expected: list[tuple[int, int]]
) -> None:
    assert split(total, parts, minimum) == expected


def test_parallel_runs_on_several_threads_with_single_threaded_blas() -> None:
    seen: list[tuple[str, int]] = []
    barrier = threading.Barrier(2, timeout=10)

    def task() -> None:
        barrier.wait()  # proves the two tasks ran at the same time
        seen.append((threading.current_thread().name, current_blas_threads()))

    before = current_blas_threads()
    with blas_threads(2):
        assert workers() == 2
        parallel([task, task])
        assert current_blas_threads() == 1
    assert workers() == 1
    assert current_blas_threads() == before
    assert len({name for name, _ in seen}) == 2
    assert [count for _, count in seen] == [1, 1]


def test_parallel_waits_for_every_part_and_reraises_the_first_error() -> None:
    done = np.zeros(3, dtype=bool)

    def ok(index: int) -> None:
        done[index] = True

    def fails() -> None:
        raise ValueError("part 0 failed")

    # Tasks 0 and 2 go to the calling thread, task 1 to a worker: the error surfaces only once the worker is done
    # (the failing thread's later tasks are skipped).
    with blas_threads(2), pytest.raises(ValueError, match="part 0 failed"):
        parallel([fails, lambda: ok(1), lambda: ok(2)])
    assert done.tolist() == [False, True, False]


def test_parallel_reraises_a_workers_error() -> None:
    def fails() -> None:
        raise KeyError("worker part failed")

    with blas_threads(2), pytest.raises(KeyError, match="worker part failed"):
        parallel([lambda: None, fails])
    with blas_threads(2):
        parallel([lambda: None, lambda: None])  # the worker is idle again and usable


def test_one_worker_runs_the_parts_in_the_calling_thread() -> None:
    names: list[str] = []
    with blas_threads(1):
        parallel([lambda: names.append(threading.current_thread().name)] * 3)
    assert names == [threading.current_thread().name] * 3


@pytest.mark.parametrize(
    ("a_shape", "b_shape"),
    [((256, 300), (300, 200)), ((20, 300), (300, 2000)), ((4, 64, 96), (4, 96, 400)), ((3, 5), (5, 4))],
)
def test_matmul_split_across_threads_matches_numpy(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(a_shape).astype(np.float32)
    b = rng.standard_normal(b_shape).astype(np.float32)
    with blas_threads(2):
        got = matmul(a, b)
    assert got.shape == np.matmul(a, b).shape and got.dtype == np.float32
    np.testing.assert_allclose(got, np.matmul(a, b), rtol=1e-5, atol=1e-4)


def test_nested_runs_restore_the_blas_threads_they_found() -> None:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):
        assert current_blas_threads() == 2
        with blas_threads(2):
            assert current_blas_threads() == 1
            with blas_threads(1):  # nested, as the RNN kernels do
                assert current_blas_threads() == 1
            assert current_blas_threads() == 1
        assert current_blas_threads() == 2


def test_blas_takes_the_threads_inside_a_run_and_gives_them_back() -> None:
    """The RNN loop's mode: BLAS at the run's thread count, kernels unsplit; one BLAS thread again after."""
    seen: list[tuple[int, int]] = []

    def probe() -> None:  # a thread other than the main one may not raise OpenBLAS's count
        with blas_threads(2):
            assert current_blas_threads() == 1
            with blas_takes_the_threads():
                seen.append((workers(), current_blas_threads()))
            seen.append((workers(), current_blas_threads()))
        with blas_takes_the_threads():  # outside a run: nothing to change
            seen.append((workers(), current_blas_threads()))

    before = current_blas_threads()
    probe()
    assert seen == [(1, 2), (2, 1), (1, before)]
    assert current_blas_threads() == before


def test_alongside_runs_its_tasks_on_a_worker_during_the_block_and_waits_for_them() -> None:
    order: list[str] = []
    barrier = threading.Barrier(2, timeout=10)
    caller = threading.current_thread().name

    def task(name: str) -> None:
        assert threading.current_thread().name != caller
        order.append(name)

    with blas_threads(2):
        with alongside([barrier.wait, lambda: task("first"), lambda: task("second")]):
            barrier.wait()  # the worker's first task runs while the block runs
        assert order == ["first", "second"]  # leaving the block waited for the rest, in order


def test_alongside_reraises_a_tasks_error_and_needs_a_second_thread() -> None:
    def fails() -> None:
        raise LookupError("background task failed")

    with blas_threads(2), pytest.raises(LookupError, match="background task failed"):
        with alongside([fails]):
            pass
    with blas_threads(1), pytest.raises(RuntimeError, match="more than one intra-op thread"):
        with alongside([lambda: None]):
            pass
