"""At more than one intra-op thread, an RNN's input projection runs on a worker while the time loop runs.

The loop is latency-bound: each step is one small GEMM (M = batch) and a dozen element-wise ops, too small
to split across threads (the hand-off costs more than a step's half, see ``_rnn_cell``). The projection
``X W^T + bias`` of all steps is one big GEMM that does not depend on the loop. So, instead of computing it
first and then looping (with OpenBLAS's threads on every GEMM, which gained little: a step's batched GEMM
ran no faster on 2 BLAS threads), the projection is cut into chunks of steps, in the order the loop reads
them; a worker computes chunk after chunk on its own core while the calling thread runs the steps of the
chunks already done, waiting only when it catches up. lstm_b8 (2 layers, hidden 256, 100 steps, batch 8)
spends 25-40% of a layer in the projection at 1 thread; here it hides behind the loop, which never waited
for a chunk: the whole model at 2 threads, in-process A/B against the old way, 0.80-0.83x the time.

Only the fast path: every sequence full length (no ``sequence_lens`` masking). A bidirectional node
overlaps the projection with its first direction's loop; the second direction runs after it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from onnxforge.runtime.kernels._rnn_cell import Cell, Run
from onnxforge.runtime.threads import alongside, blas_takes_the_threads, workers

# Chunks have at least this many GEMM rows (steps x batch): thinner products run well below BLAS's speed.
_MIN_CHUNK_ROWS = 64
# ... and there are at most this many: the loop waits for the first one, which it computes itself.
_MAX_CHUNKS = 16


def drive(
    run: Run, initial_h: np.ndarray | None, bias: np.ndarray, make_cell: Callable[[int], Cell], num_outputs: int
) -> Any:
    """A node's whole time loop and outputs: overlapped with the projection where :func:`overlaps` says so,
    else the projection first, then the loop with BLAS on the run's threads (see ``_rnn_cell``)."""
    h0 = run.initial(initial_h)
    cells = [make_cell(d) for d in range(run.packed.num_directions)]
    if overlaps(run):
        finals = loop_overlapped(run, bias, cells, h0)
    else:
        with blas_takes_the_threads():
            finals = run.loop(run.project(bias), cells, h0)
    return run.outputs([[h, *cell.extra] for h, cell in zip(finals, cells)], num_outputs)


def chunks(run: Run) -> list[tuple[int, int]]:
    """The projection's chunks ``[t0, t1)``, in the order the first direction's loop reads them."""
    size = max(-(-_MIN_CHUNK_ROWS // max(1, run.batch)), -(-run.seq_length // _MAX_CHUNKS))
    cuts = [(t0, min(run.seq_length, t0 + size)) for t0 in range(0, run.seq_length, size)]
    return cuts[::-1] if run.reverse[0] else cuts


def overlaps(run: Run) -> bool:
    """Whether :func:`loop_overlapped` applies: a worker to spare, full-length sequences, several chunks."""
    return workers() > 1 and run.lengths is None and len(chunks(run)) > 1


def loop_overlapped(run: Run, bias: np.ndarray, cells: Sequence[Cell], h0: np.ndarray) -> list[np.ndarray]:
    """``run.loop(run.project(bias), cells, h0)``, with the projection computed alongside the first direction."""
    projected = run.projection_buffer()
    cuts = chunks(run)
    done = [threading.Event() for _ in cuts]
    failed: list[BaseException] = []

    def compute(index: int) -> None:
        if not failed:
            try:
                run.project_steps(bias, projected, *cuts[index])
            except BaseException as error:  # re-raised by the loop, which must not wait forever for it
                failed.append(error)
        done[index].set()

    with np.errstate(over="ignore"):  # exp overflowing to inf is part of the LSTM's exp form
        with alongside([lambda index=index: compute(index) for index in range(1, len(cuts))]):
            compute(0)
            h = h0[0]
            for index, (t0, t1) in enumerate(cuts):
                done[index].wait()
                if failed:
                    raise failed[0]
                h = run.steps(0, projected[0], cells[0], h, run.times(0, t0, t1))
        finals = [h]
        finals += [run.steps(d, projected[d], cells[d], h0[d], run.times(d)) for d in range(1, len(cells))]
    return finals
