"""How long a second CPU takes to pick up half of a tiny op: onnxforge's thread pool vs a spinning worker process.

Two threads of one process share the GIL: a worker that needs it after the caller's Python sleeps in the OS and
wakes tens of microseconds later on these VMs, so only parts of ~100 us or more gain from a second thread. A
worker *process* has its own GIL; spinning in Python on a flag in shared memory, it sees a posted task in well
under a microsecond. This script times one split op (two float32 multiplies of 64K elements, one per CPU) both
ways, against doing both halves serially. Measured 2026-12-04 on the 2-CPU bench machine, in its fast and its slow
state (see README, Speed): serial 7.1-7.5 us, spinning process 4.2-5.2 us, thread pool 15.7-35.8 us (p90 up to 50).

Run: ``.venv/bin/python benchmarks/handoff.py`` (Linux; pins the two CPUs 0 and 1).
"""

from __future__ import annotations

import os
import time
from multiprocessing import Process, shared_memory

import numpy as np

from onnxforge.runtime import threads

RUNS = 20_000
WARMUP = 1_000
HALF = 1 << 16  # float32 elements per half
_DATA_OFFSET = 128  # bytes: the flags' cache lines come first


def _views(buf: memoryview) -> tuple[np.ndarray, np.ndarray]:
    flags = np.ndarray((16,), np.int64, buffer=buf)  # [0]: task sequence number (< 0: stop), [8]: done
    data = np.ndarray((2, HALF), np.float32, buffer=buf, offset=_DATA_OFFSET)
    return flags, data


def _worker(name: str) -> None:
    shm = shared_memory.SharedMemory(name=name)
    flags, data = _views(shm.buf)
    os.sched_setaffinity(0, {1})
    seen = 0
    while True:
        while flags[0] == seen:
            pass
        seen = int(flags[0])
        if seen < 0:
            break
        np.multiply(data[1], 1.0, out=data[1])
        flags[8] = seen
    del flags, data
    shm.close()


def _report(what: str, seconds: list[float]) -> None:
    micros = np.array(seconds[WARMUP:]) * 1e6
    print(f"{what:38s} median {np.median(micros):6.1f} us  p90 {np.percentile(micros, 90):6.1f} us")


def main() -> None:
    shm = shared_memory.SharedMemory(create=True, size=_DATA_OFFSET + 2 * 4 * HALF)
    flags, data = _views(shm.buf)
    flags[:] = 0
    data[:] = 1
    worker = Process(target=_worker, args=(shm.name,))
    worker.start()
    os.sched_setaffinity(0, {0})
    time.sleep(0.5)
    serial, process, pool = [], [], []
    for _ in range(RUNS):
        start = time.perf_counter()
        np.multiply(data[0], 1.0, out=data[0])
        np.multiply(data[1], 1.0, out=data[1])
        serial.append(time.perf_counter() - start)
    for task in range(1, RUNS + 1):
        start = time.perf_counter()
        flags[0] = task
        np.multiply(data[0], 1.0, out=data[0])
        while flags[8] != task:
            pass
        process.append(time.perf_counter() - start)
    flags[0] = -1
    worker.join()
    os.sched_setaffinity(0, {0, 1})
    with threads.blas_threads(2):
        for _ in range(RUNS):
            start = time.perf_counter()
            threads.parallel([lambda half=half: np.multiply(half, 1.0, out=half) for half in data])
            pool.append(time.perf_counter() - start)
    _report("both halves serially, one thread", serial)
    _report("halves on a spinning worker process", process)
    _report("halves on onnxforge's thread pool", pool)
    del flags, data
    shm.close()
    shm.unlink()


if __name__ == "__main__":
    main()
