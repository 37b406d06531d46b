"""Shared machinery of RNN, GRU and LSTM: in-place activations, packed weights, the time loop.

Speed rules (the recurrence is latency-bound: ~100s of tiny steps, each one small GEMM):

- ``X W^T + Wb (+ Rb)`` for every step and every direction is ONE GEMM before the loop (W of all
  directions side by side in one packed ``[input, num_directions * gates * hidden]`` matrix), then laid
  out gate-major, [num_directions, seq, gates, batch, hidden], in one copy.
- Gate-major everywhere: numpy runs an element-wise op on a contiguous [batch, hidden] block ~2x faster
  than on a [batch, hidden] column slice of a [batch, gates * hidden] buffer (the strided view goes
  through the general iterator), and the loop does ~12 such ops per step. The recurrent GEMM follows:
  ``H_{t-1} @ R^T`` as one batched matmul over ``R^T`` packed [gates, hidden, hidden] writes the
  [gates, batch, hidden] buffer directly (OpenBLAS runs these per-gate GEMMs no slower, in most
  measurements 5-15% faster, than one [batch, hidden] x [hidden, gates * hidden] GEMM).
- ``R^T`` is packed once per node (``prepare``, when W and R are constant), never per run.
- Activations run in place and ``H_t`` goes straight into its slot of Y, which is then read as the next
  step's ``H_{t-1}``: no allocation and no copy per step.
- The per-step GEMM (M = batch) is too small to split into parts of our own pool: the hand-off costs
  more than it saves, and parallel hidden slices serialize on the GIL (1.28x slower). At more than one
  intra-op thread the projection instead runs on a worker alongside the loop (``_rnn_overlap``). Where that
  does not apply (``sequence_lens`` masking, a single chunk), the whole call lets OpenBLAS use the run's
  intra-op threads (``threads.blas_takes_the_threads``): through a loop of back-to-back GEMMs its spinning
  helper threads have no other kernel to starve (lstm_b8 at 2 threads, in-process A/B: 0.83x the time with
  one BLAS thread).

Activations here have the form ``act(x, out)``: ``out = act(x)`` element-wise, ``out`` may be ``x``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels._relu import zeros_like

InPlace = Callable[[np.ndarray, np.ndarray], None]
# step(x_t, h_prev, h_out): the cell's update for one step; H_t goes to h_out, any other state (LSTM's C)
# lives in the step's own buffers and is updated in place (listed in Cell.extra for masking and outputs).
StepFn = Callable[[np.ndarray, np.ndarray, np.ndarray], None]


def _sigmoid(x: np.ndarray, out: np.ndarray) -> None:
    # 1 / (1 + exp(-x)): numpy's exp is ~1.5x cheaper than its tanh. For x < -88 (float32) exp overflows
    # to inf and the result is the correct 0 (Run.loop silences the overflow warning).
    np.negative(x, out=out)
    np.exp(out, out=out)
    np.add(out, 1, out=out)
    np.reciprocal(out, out=out)


def _tanh(x: np.ndarray, out: np.ndarray) -> None:
    np.tanh(x, out=out)


def _relu(x: np.ndarray, out: np.ndarray) -> None:
    np.maximum(x, zeros_like(x) if x.size >= 4096 and x.dtype == out.dtype else x.dtype.type(0), out=out)


def _out_of_place(fn: Callable[[np.ndarray, float, float], np.ndarray], alpha: float, beta: float) -> InPlace:
    def apply(x: np.ndarray, out: np.ndarray) -> None:
        np.copyto(out, fn(x, alpha, beta), casting="unsafe")

    return apply


# name -> (in-place function or out-of-place fn(x, alpha, beta); default alpha or None if unused; default beta
# or None if unused). Defaults are those of the ONNX operators of the same name.
_ACTIVATIONS: dict[str, tuple[Any, float | None, float | None]] = {
    "tanh": (_tanh, None, None),
    "sigmoid": (_sigmoid, None, None),
    "relu": (_relu, None, None),
    "affine": (lambda x, a, b: a * x + b, 1.0, 0.0),
    "leakyrelu": (lambda x, a, b: np.where(x >= 0, x, a * x), 0.01, None),
    "thresholdedrelu": (lambda x, a, b: np.where(x > a, x, 0), 1.0, None),
    "scaledtanh": (lambda x, a, b: a * np.tanh(b * x), 1.0, 1.0),
    "hardsigmoid": (lambda x, a, b: np.clip(a * x + b, 0, 1), 0.2, 0.5),
    "elu": (lambda x, a, b: np.where(x >= 0, x, a * np.expm1(np.minimum(x, 0))), 1.0, None),
    "softsign": (lambda x, a, b: x / (1 + np.abs(x)), None, None),
    "softplus": (lambda x, a, b: np.logaddexp(0, x), None, None),
}
_IN_PLACE = {"tanh", "sigmoid", "relu"}


@functools.lru_cache(maxsize=256)
def activations(
    names: tuple[str, ...],
    alphas: tuple[float, ...],
    betas: tuple[float, ...],
    defaults: tuple[str, ...],
    num_directions: int,
) -> tuple[tuple[InPlace, ...], ...]:
    """One tuple of activations per direction.

    alpha/beta are consumed in order by the activations that take them (onnxruntime's reading of "consumed
    in the order of activation functions"); one direction's worth of names serves both directions.
    """
    per_direction = len(defaults)
    names = names or defaults * num_directions
    if len(names) not in (per_direction, per_direction * num_directions):
        raise InvalidArgument(f"activations: expected {per_direction * num_directions} names, got {len(names)}")
    alpha_iter, beta_iter = iter(alphas), iter(betas)
    built: list[InPlace] = []
    for name in names:
        key = name.lower()
        entry = _ACTIVATIONS.get(key)
        if entry is None:
            raise InvalidArgument(f"activations: unsupported '{name}' (expected one of {sorted(_ACTIVATIONS)})")
        fn, alpha_default, beta_default = entry
        alpha = next(alpha_iter, alpha_default) if alpha_default is not None else 0.0
        beta = next(beta_iter, beta_default) if beta_default is not None else 0.0
        built.append(fn if key in _IN_PLACE else _out_of_place(fn, float(alpha), float(beta)))
    if len(built) < per_direction * num_directions:
        built = built * num_directions
    return tuple(tuple(built[d * per_direction : (d + 1) * per_direction]) for d in range(num_directions))


def clipped(act: InPlace, clip: float | None) -> InPlace:
    """``act`` applied to its input bounded to [-clip, clip]; ``act`` itself when there is no clip."""
    if clip is None:
        return act
    bound = float(clip)

    def apply(x: np.ndarray, out: np.ndarray) -> None:
        np.clip(x, -bound, bound, out=out)
        act(out, out)

    return apply


def compute_dtype(dtype: np.dtype[Any]) -> type[np.floating[Any]]:
    """float64 stays float64; everything else (float16, bfloat16, float32) is computed in float32."""
    return np.float64 if dtype == np.float64 else np.float32


class Packed:
    """W, R and B of one node in the loop's layout, built once per node when they are constant.

    ``w_t``: [input, num_directions * gates * hidden], all directions side by side (one projection GEMM);
    ``r_t[d]``: [gates, hidden, hidden], ``r_t[d][k]`` = R[d]'s block k transposed; ``bias(B)``: Wb + Rb per
    direction, flattened like ``w_t``'s columns, except GRU's Rb_h with linear_before_reset, which stays out
    (``rb_h``, not rearranged).

    ``gate_order`` rearranges the gate blocks (new block k is ONNX block ``gate_order[k]``) so the gates a
    cell activates together are adjacent; ``gate_scale`` multiplies new block k's rows of W, R and the bias,
    so a cell can fold a constant factor of its activation's input into the GEMMs (LSTM's exp forms).
    """

    def __init__(
        self,
        W: np.ndarray,
        R: np.ndarray,
        B: np.ndarray | None,
        num_gates: int,
        dtype: type[np.floating[Any]],
        num_directions: int,
        hidden_size: int | None,
        keep_rb_h: bool = False,
        gate_order: Sequence[int] | None = None,
        gate_scale: Sequence[float] | None = None,
    ) -> None:
        if W.ndim != 3 or R.ndim != 3:
            raise InvalidArgument(f"W and R must be 3-D, got shapes {W.shape}, {R.shape}")
        self.dtype = dtype
        self.num_gates = num_gates
        self.num_directions = num_directions
        self.hidden = R.shape[-1]
        if hidden_size is not None and hidden_size != self.hidden:
            raise InvalidArgument(f"hidden_size is {hidden_size} but R has {self.hidden} columns")
        self.width = num_gates * self.hidden
        self.input_size = W.shape[2]
        if W.shape != (num_directions, self.width, self.input_size) or R.shape != (
            num_directions,
            self.width,
            self.hidden,
        ):
            raise InvalidArgument(f"W {W.shape} / R {R.shape} do not fit {num_directions} direction(s)")
        self.gate_order = list(gate_order) if gate_order is not None else list(range(num_gates))
        self.gate_scale = np.asarray(gate_scale if gate_scale is not None else [1.0] * num_gates, dtype=dtype)
        self.scaled = bool(np.any(self.gate_scale != 1))
        # Each gate block is reordered, scaled and transposed in one pass, straight into its place, not
        # through reordered and scaled copies of the whole weight (lstm_b8's two LSTMs, in-session A/B:
        # 1.66 -> 1.41 ms; the same arrays).
        self.w_t = np.empty((self.input_size, num_directions * self.width), dtype=dtype)
        columns = self.w_t.reshape(self.input_size, num_directions, num_gates, self.hidden)
        self.r_t = [np.empty((num_gates, self.hidden, self.hidden), dtype=dtype) for _ in range(num_directions)]
        w_blocks = W.astype(dtype, copy=False).reshape(num_directions, num_gates, self.hidden, self.input_size)
        r_blocks = R.astype(dtype, copy=False).reshape(num_directions, num_gates, self.hidden, self.hidden)
        for d in range(num_directions):
            for k, gate in enumerate(self.gate_order):
                self._place(w_blocks[d, gate].T, k, columns[:, d, k])
                self._place(r_blocks[d, gate].T, k, self.r_t[d][k])
        self.keep_rb_h = keep_rb_h
        self.packed_bias = self.bias(B) if B is not None else None

    def _place(self, block: np.ndarray, k: int, out: np.ndarray) -> None:
        """``out[...] = block``, times new block ``k``'s gate scale when there is one (as ``_arrange``)."""
        if self.scaled:
            np.multiply(block, self.gate_scale[k], out=out)
        else:
            np.copyto(out, block)

    def _arrange(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` [num_directions, gates * hidden, ...] with its gate blocks reordered and scaled."""
        dirs, hs = self.num_directions, self.hidden
        blocks = rows.reshape(dirs, self.num_gates, hs, -1)[:, self.gate_order]  # a copy: scaled in place
        if self.scaled:
            np.multiply(blocks, self.gate_scale[None, :, None, None], out=blocks)
        return blocks.reshape(rows.shape)

    def bias(self, B: np.ndarray | None) -> tuple[np.ndarray, list[np.ndarray]]:
        """(projection bias [num_directions * width], per-direction Rb_h kept out of it, or zeros)."""
        dirs, width, hs = self.num_directions, self.width, self.hidden
        if B is None:
            return np.zeros(dirs * width, dtype=self.dtype), [np.zeros(hs, dtype=self.dtype)] * dirs
        b = B.astype(self.dtype, copy=False)
        if b.shape != (dirs, 2 * width):
            raise InvalidArgument(f"B: expected shape {(dirs, 2 * width)}, got {B.shape}")
        folded = b[:, :width] + b[:, width:]
        rb_h = [b[d, width + 2 * hs :].copy() for d in range(dirs)]
        if self.keep_rb_h:
            # GRU with linear_before_reset: Rb_h sits inside the reset product, not in the projection.
            folded[:, 2 * hs :] = b[:, 2 * hs : width]
        return self._arrange(folded).reshape(-1), rb_h


class Cell:
    """One direction's step function and its in-place extra states (LSTM's C)."""

    def __init__(self, step: StepFn, extra: Sequence[np.ndarray] = ()) -> None:
        self.step = step
        self.extra = list(extra)


class Run:
    """One call: X sequence-major in the compute dtype, the Y buffer the steps write into, the time loop."""

    def __init__(
        self, X: np.ndarray, packed: Packed, sequence_lens: np.ndarray | None, direction: str, layout: int
    ) -> None:
        if direction not in ("forward", "reverse", "bidirectional"):
            raise InvalidArgument(f"direction: expected forward, reverse or bidirectional, got '{direction}'")
        dirs = 2 if direction == "bidirectional" else 1
        if X.ndim != 3 or X.shape[2] != packed.input_size or dirs != packed.num_directions:
            raise InvalidArgument(
                f"X {X.shape} does not fit W (input size {packed.input_size}, {packed.num_directions} "
                f"direction(s)), direction '{direction}'"
            )
        self.packed = packed
        self.out_dtype = X.dtype
        self.layout = layout
        x = X.astype(packed.dtype, copy=False)
        self.x = x.transpose(1, 0, 2) if layout else x
        self.seq_length, self.batch, _ = self.x.shape
        self.reverse = [direction == "reverse", True][:dirs]
        self.lengths = self._lengths(sequence_lens)
        # Every entry of Y is written when all sequences run in full; padding must read as zero otherwise.
        allocate = np.empty if self.lengths is None else np.zeros
        self.y = allocate((self.seq_length, dirs, self.batch, packed.hidden), dtype=packed.dtype)

    def _lengths(self, sequence_lens: np.ndarray | None) -> np.ndarray | None:
        """Per-batch lengths, or None when every entry runs the full sequence (the fast path)."""
        if sequence_lens is None:
            return None
        lengths = np.asarray(sequence_lens).astype(np.int64).reshape(-1)
        if lengths.shape != (self.batch,) or lengths.min(initial=0) < 0 or lengths.max(initial=0) > self.seq_length:
            raise InvalidArgument(
                f"sequence_lens must be {self.batch} values in [0, {self.seq_length}], got {lengths.tolist()}"
            )
        return None if bool(np.all(lengths == self.seq_length)) else lengths

    def initial(self, value: np.ndarray | None) -> np.ndarray:
        """initial_h / initial_c as a fresh [num_directions, batch, hidden] array; zeros when omitted."""
        shape = (self.packed.num_directions, self.batch, self.packed.hidden)
        if value is None:
            return np.zeros(shape, dtype=self.packed.dtype)
        state = value.transpose(1, 0, 2) if self.layout else value
        if state.shape != shape:
            raise InvalidArgument(f"initial state: expected shape {shape} (layout {self.layout}), got {value.shape}")
        return np.array(state, dtype=self.packed.dtype)  # a copy: LSTM updates C in place

    def project(self, bias: np.ndarray) -> np.ndarray:
        """X W^T + bias for every step and direction in one GEMM, as [num_directions, seq, gates, batch, hidden]."""
        out = self.projection_buffer()
        self.project_steps(bias, out, 0, self.seq_length)
        return out

    def projection_buffer(self) -> np.ndarray:
        packed = self.packed
        shape = (packed.num_directions, self.seq_length, packed.num_gates, self.batch, packed.hidden)
        return np.empty(shape, dtype=packed.dtype)

    def project_steps(self, bias: np.ndarray, out: np.ndarray, t0: int, t1: int) -> None:
        """:meth:`project` for the steps ``[t0, t1)`` only, into ``out[:, t0:t1]``."""
        packed = self.packed
        flat = self.x[t0:t1].reshape(-1, packed.input_size)
        dirs, gates, hs = packed.num_directions, packed.num_gates, packed.hidden
        projected = np.matmul(flat, packed.w_t).reshape(t1 - t0, self.batch, dirs, gates, hs)
        # The bias add doubles as the gate-major relayout: one pass over the projection, not two.
        np.add(projected.transpose(2, 0, 3, 1, 4), bias.reshape(dirs, 1, gates, 1, hs), out=out[:, t0:t1])

    def loop(self, projected: Sequence[np.ndarray], cells: Sequence[Cell], h0: np.ndarray) -> list[np.ndarray]:
        """Every direction's loop over time."""
        with np.errstate(over="ignore"):  # exp overflowing to inf is part of the LSTM's exp form
            return [self._direction(d, projected[d], cells[d], h0[d]) for d in range(len(cells))]

    def times(self, d: int, t0: int = 0, t1: int | None = None) -> range:
        """The steps ``[t0, t1)`` in direction ``d``'s order."""
        t1 = self.seq_length if t1 is None else t1
        return range(t1 - 1, t0 - 1, -1) if self.reverse[d] else range(t0, t1)

    def steps(self, d: int, projected: np.ndarray, cell: Cell, h: np.ndarray, times: range) -> np.ndarray:
        """Run direction ``d``'s steps ``times`` (every sequence full length) from state ``h``, writing Y[:, d];
        returns the last H."""
        y, step = self.y[:, d], cell.step
        for t in times:
            h_out = y[t]
            step(projected[t], h, h_out)
            h = h_out
        return h

    def _direction(self, d: int, projected: np.ndarray, cell: Cell, h0: np.ndarray) -> np.ndarray:
        """Run one direction, writing Y[:, d]; returns the final H (cell.extra holds the other final states)."""
        y, step, lengths = self.y[:, d], cell.step, self.lengths
        if lengths is None:
            return self.steps(d, projected, cell, h0, self.times(d))
        order: np.ndarray | None = None
        ys = y
        if self.reverse[d]:
            # Step s of batch b reads time L_b - 1 - s; past L_b the index is left alone, so the map is its
            # own inverse and the same gather puts Y back in time order.
            s = np.arange(self.seq_length)[:, None]
            order = np.where(s < lengths, lengths - 1 - s, s)[:, :, None]
            projected = np.take_along_axis(projected, order[:, None], axis=0)  # [seq, gates, batch, hidden]
            ys = np.zeros_like(y)
        h, h_new = h0.copy(), np.empty_like(h0)
        saved = [np.empty_like(state) for state in cell.extra]
        for t in range(int(lengths.max(initial=0))):
            active = (t < lengths)[:, None]
            for state, copy in zip(cell.extra, saved):
                np.copyto(copy, state)
            step(projected[t], h, h_new)
            np.copyto(ys[t], h_new, where=active)
            np.copyto(h, h_new, where=active)
            for state, copy in zip(cell.extra, saved):
                np.copyto(state, copy, where=~active)
        # onnxruntime reports an all-zero final state for an empty sequence, not the initial state.
        empty = (lengths == 0)[:, None]
        for state in (h, *cell.extra):
            np.copyto(state, 0, where=empty)
        if order is not None:
            y[...] = np.take_along_axis(ys, order, axis=0)
        return h

    def outputs(self, finals: Sequence[Sequence[np.ndarray]], num_outputs: int) -> Any:
        """(Y, Y_h[, Y_c]) in the requested layout and dtype, cut to the outputs the node declares.

        ``finals[d]`` lists direction d's final states (H, then the cell's extra states).
        """
        y = self.y  # [seq, num_directions, batch, hidden]
        states = [np.stack([final[k] for final in finals]) for k in range(len(finals[0]))]
        if self.layout:
            y = y.transpose(2, 0, 1, 3)
            states = [s.transpose(1, 0, 2) for s in states]
        results = [np.ascontiguousarray(v, dtype=self.out_dtype) for v in (y, *states)][:num_outputs]
        return results[0] if len(results) == 1 else tuple(results)
