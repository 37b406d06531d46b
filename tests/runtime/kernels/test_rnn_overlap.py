"""RNN / GRU / LSTM at 2 intra-op threads: the input projection runs on a worker chunk by chunk while the
loop runs (``_rnn_overlap``); the numbers are those of 1 thread, and a failing chunk raises, not hangs."""

from __future__ import annotations

import numpy as np
import pytest

from onnxforge import InferenceSession, SessionOptions
from onnxforge.runtime.kernels import _rnn_cell, _rnn_overlap
from tests.runtime.kernels.test_rnn import feeds, make_inputs, rnn_model

CONSTANTS = ("W", "R", "B")


def session(model_bytes: bytes, threads: int) -> InferenceSession:
    options = SessionOptions()
    options.intra_op_num_threads = threads
    return InferenceSession(model_bytes, options)


def case(op: str, direction: str, seq: int = 40, batch: int = 3) -> tuple[bytes, dict[str, np.ndarray]]:
    dirs = 2 if direction == "bidirectional" else 1
    inputs = make_inputs(
        op,
        np.random.default_rng(7),
        seq=seq,
        batch=batch,
        input_size=5,
        hidden=6,
        dirs=dirs,
        layout=0,
        dtype=np.float32,
        bias=True,
        initial=True,
        peepholes=op == "LSTM",
    )
    num_outputs = 3 if op == "LSTM" else 2
    model = rnn_model(op, inputs, num_outputs, opset=14, constants=CONSTANTS, hidden_size=6, direction=direction)
    return model.SerializeToString(), feeds(inputs, CONSTANTS)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_overlapped_projection_gives_the_one_thread_numbers(
    op: str, direction: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, inputs = case(op, direction)
    calls: list[int] = []
    original = _rnn_overlap.loop_overlapped

    def counted(*args: object) -> list[np.ndarray]:
        calls.append(1)
        return original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_rnn_overlap, "loop_overlapped", counted)
    want = session(model, 1).run(None, inputs)
    assert calls == []
    two = session(model, 2)
    for _ in range(2):  # twice: the worker and the buffers are reused
        have = two.run(None, inputs)
        for w, h in zip(want, have):
            assert h.shape == w.shape and h.dtype == np.float32
            np.testing.assert_allclose(h, w, rtol=1e-5, atol=1e-6)
    assert calls == [1, 1]


def test_chunks_follow_the_loop_order_and_cover_every_step() -> None:
    model, inputs = case("LSTM", "reverse", seq=40, batch=3)
    x = inputs["X"]
    packed = _rnn_cell.Packed(
        np.zeros((1, 24, 5), np.float32), np.zeros((1, 24, 6), np.float32), None, 4, np.float32, 1, 6
    )
    run = _rnn_cell.Run(x, packed, None, "reverse", 0)
    cuts = _rnn_overlap.chunks(run)
    # 64 GEMM rows at batch 3: 22 steps a chunk, the last chunk first for a reverse loop.
    assert cuts == [(22, 40), (0, 22)]
    forward = _rnn_cell.Run(x, packed, None, "forward", 0)
    long_run = _rnn_cell.Run(np.zeros((400, 8, 5), np.float32), packed, None, "forward", 0)
    assert _rnn_overlap.chunks(forward) == [(0, 22), (22, 40)]
    assert len(_rnn_overlap.chunks(long_run)) == 16  # at most 16 chunks: 25 steps each
    assert sum(t1 - t0 for t0, t1 in _rnn_overlap.chunks(long_run)) == 400


def test_a_failing_chunk_raises_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    model, inputs = case("GRU", "forward", seq=60, batch=2)
    original = _rnn_cell.Run.project_steps

    def fails_late(self: _rnn_cell.Run, bias: np.ndarray, out: np.ndarray, t0: int, t1: int) -> None:
        if t0 > 0:
            raise MemoryError(f"chunk at step {t0}")
        original(self, bias, out, t0, t1)

    two = session(model, 2)
    monkeypatch.setattr(_rnn_cell.Run, "project_steps", fails_late)
    with pytest.raises(Exception, match="chunk at step 32"):
        two.run(None, inputs)
    monkeypatch.setattr(_rnn_cell.Run, "project_steps", original)
    np.testing.assert_allclose(two.run(None, inputs)[0], session(model, 1).run(None, inputs)[0], rtol=1e-5, atol=1e-6)
