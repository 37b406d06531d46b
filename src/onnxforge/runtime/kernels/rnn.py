"""Recurrent layers: RNN, GRU and LSTM, every direction, layout and optional input.

Notation: ``X_t`` is the input at step t, ``H_{t-1}`` the previous hidden state, ``W``/``R`` the input and
recurrence weights (one block per gate, stacked along axis 1), ``Wb``/``Rb`` their biases (the two halves of
``B``), ``(.)`` the element-wise product and f, g, h the activations.

RNN (default f = Tanh)::

    H_t = f(X_t W^T + H_{t-1} R^T + Wb + Rb)

GRU (default f = Sigmoid, g = Tanh; gate order z, r, h)::

    z_t = f(X_t W_z^T + H_{t-1} R_z^T + Wb_z + Rb_z)
    r_t = f(X_t W_r^T + H_{t-1} R_r^T + Wb_r + Rb_r)
    h_t = g(X_t W_h^T + (r_t (.) H_{t-1}) R_h^T + Rb_h + Wb_h)      linear_before_reset = 0
    h_t = g(X_t W_h^T + r_t (.) (H_{t-1} R_h^T + Rb_h) + Wb_h)      linear_before_reset != 0
    H_t = (1 - z_t) (.) h_t + z_t (.) H_{t-1}

LSTM (default f = Sigmoid, g = Tanh, h = Tanh; gate order i, o, f, c; peepholes P in order i, o, f)::

    i_t = f(X_t W_i^T + H_{t-1} R_i^T + P_i (.) C_{t-1} + Wb_i + Rb_i)
    f_t = f(X_t W_f^T + H_{t-1} R_f^T + P_f (.) C_{t-1} + Wb_f + Rb_f)     (1 - i_t when input_forget)
    c_t = g(X_t W_c^T + H_{t-1} R_c^T + Wb_c + Rb_c)
    C_t = f_t (.) C_{t-1} + i_t (.) c_t
    o_t = f(X_t W_o^T + H_{t-1} R_o^T + P_o (.) C_t + Wb_o + Rb_o)
    H_t = o_t (.) h(C_t)

``clip`` bounds every activation's input to [-clip, clip] (not h's input C_t, as in onnxruntime). The input
projection ``X W^T + biases`` is one matmul over all steps; each step then does only the recurrent matmul.
With ``sequence_lens``, batch entry b runs its first L_b steps (the reverse direction walks them backwards
from L_b - 1), Y is zero past L_b and Y_h / Y_c hold the state after the last valid step (zero when L_b is 0).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.registry import kernel

Activation = Callable[[np.ndarray], np.ndarray]
State = tuple[np.ndarray, ...]
Step = Callable[[np.ndarray, State], State]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # The tanh form never overflows, unlike 1 / (1 + exp(-x)) for very negative x.
    return 0.5 * (np.tanh(0.5 * x) + 1)


# name -> (function of x, alpha, beta; default alpha or None if unused; default beta or None if unused).
# Defaults are those of the ONNX operators of the same name.
_ACTIVATIONS: dict[str, tuple[Callable[[np.ndarray, float, float], np.ndarray], float | None, float | None]] = {
    "tanh": (lambda x, a, b: np.tanh(x), None, None),
    "sigmoid": (lambda x, a, b: _sigmoid(x), None, None),
    "relu": (lambda x, a, b: np.maximum(x, 0), None, None),
    "affine": (lambda x, a, b: a * x + b, 1.0, 0.0),
    "leakyrelu": (lambda x, a, b: np.where(x >= 0, x, a * x), 0.01, None),
    "thresholdedrelu": (lambda x, a, b: np.where(x > a, x, 0), 1.0, None),
    "scaledtanh": (lambda x, a, b: a * np.tanh(b * x), 1.0, 1.0),
    "hardsigmoid": (lambda x, a, b: np.clip(a * x + b, 0, 1), 0.2, 0.5),
    "elu": (lambda x, a, b: np.where(x >= 0, x, a * np.expm1(np.minimum(x, 0))), 1.0, None),
    "softsign": (lambda x, a, b: x / (1 + np.abs(x)), None, None),
    "softplus": (lambda x, a, b: np.logaddexp(0, x), None, None),
}


@functools.lru_cache(maxsize=256)
def _activations(
    names: tuple[str, ...],
    alphas: tuple[float, ...],
    betas: tuple[float, ...],
    defaults: tuple[str, ...],
    num_directions: int,
) -> tuple[tuple[Activation, ...], ...]:
    """One tuple of activations per direction.

    alpha/beta are consumed in order by the activations that take them (onnxruntime's reading of "consumed
    in the order of activation functions"); one direction's worth of names serves both directions.
    """
    per_direction = len(defaults)
    names = names or defaults * num_directions
    if len(names) not in (per_direction, per_direction * num_directions):
        raise InvalidArgument(f"activations: expected {per_direction * num_directions} names, got {len(names)}")
    alpha_iter, beta_iter = iter(alphas), iter(betas)
    built: list[Activation] = []
    for name in names:
        entry = _ACTIVATIONS.get(name.lower())
        if entry is None:
            raise InvalidArgument(f"activations: unsupported '{name}' (expected one of {sorted(_ACTIVATIONS)})")
        fn, alpha_default, beta_default = entry
        alpha = next(alpha_iter, alpha_default) if alpha_default is not None else 0.0
        beta = next(beta_iter, beta_default) if beta_default is not None else 0.0
        built.append(functools.partial(fn, a=float(alpha), b=float(beta)))
    if len(built) < per_direction * num_directions:
        built = built * num_directions
    return tuple(tuple(built[d * per_direction : (d + 1) * per_direction]) for d in range(num_directions))


def _tuple(values: Sequence[Any] | None) -> tuple[Any, ...]:
    return tuple(values) if values else ()


def _clipper(clip: float | None) -> Activation:
    if clip is None:
        return lambda x: x
    bound = float(clip)
    return lambda x: np.clip(x, -bound, bound)


class _Setup:
    """Inputs normalised to sequence-major float32/float64 arrays, with the shapes the loop needs."""

    def __init__(
        self,
        X: np.ndarray,
        W: np.ndarray,
        R: np.ndarray,
        sequence_lens: np.ndarray | None,
        direction: str,
        hidden_size: int | None,
        layout: int,
        num_gates: int,
    ) -> None:
        if direction not in ("forward", "reverse", "bidirectional"):
            raise InvalidArgument(f"direction: expected forward, reverse or bidirectional, got '{direction}'")
        if X.ndim != 3 or W.ndim != 3 or R.ndim != 3:
            raise InvalidArgument(f"X, W and R must be 3-D, got shapes {X.shape}, {W.shape}, {R.shape}")
        self.out_dtype = X.dtype
        self.dtype = np.float64 if X.dtype == np.float64 else np.float32
        self.layout = layout
        x = X.astype(self.dtype, copy=False)
        self.x = x.transpose(1, 0, 2) if layout else x
        self.seq_length, self.batch, _ = self.x.shape
        self.num_directions = 2 if direction == "bidirectional" else 1
        self.hidden = R.shape[-1]
        if hidden_size is not None and hidden_size != self.hidden:
            raise InvalidArgument(f"hidden_size is {hidden_size} but R has {self.hidden} columns")
        expected_w = (self.num_directions, num_gates * self.hidden, self.x.shape[2])
        if W.shape != expected_w or R.shape != (self.num_directions, num_gates * self.hidden, self.hidden):
            raise InvalidArgument(f"W {W.shape} / R {R.shape} do not fit X {X.shape}, direction '{direction}'")
        self.w = W.astype(self.dtype, copy=False)
        self.r = R.astype(self.dtype, copy=False)
        self.reverse = [direction == "reverse", True][: self.num_directions]
        self.lengths = self._lengths(sequence_lens)

    def activations(
        self, names: list[str] | None, alphas: list[float] | None, betas: list[float] | None, defaults: tuple[str, ...]
    ) -> tuple[tuple[Activation, ...], ...]:
        return _activations(_tuple(names), _tuple(alphas), _tuple(betas), defaults, self.num_directions)

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
        """initial_h / initial_c as [num_directions, batch, hidden]; zeros when omitted."""
        shape = (self.num_directions, self.batch, self.hidden)
        if value is None:
            return np.zeros(shape, dtype=self.dtype)
        state = value.astype(self.dtype, copy=False)
        state = state.transpose(1, 0, 2) if self.layout else state
        if state.shape != shape:
            raise InvalidArgument(f"initial state: expected shape {shape} (layout {self.layout}), got {value.shape}")
        return state

    def bias(self, B: np.ndarray | None, num_gates: int) -> tuple[np.ndarray, np.ndarray]:
        """(Wb, Rb), each [num_directions, num_gates * hidden]."""
        width = num_gates * self.hidden
        if B is None:
            zeros = np.zeros((self.num_directions, width), dtype=self.dtype)
            return zeros, zeros
        b = B.astype(self.dtype, copy=False)
        if b.shape != (self.num_directions, 2 * width):
            raise InvalidArgument(f"B: expected shape {(self.num_directions, 2 * width)}, got {B.shape}")
        return b[:, :width], b[:, width:]

    def project(self, direction: int, bias: np.ndarray) -> np.ndarray:
        """X W^T + bias for every step at once, as one [seq * batch, input] x [input, gates * hidden] GEMM."""
        flat = self.x.reshape(-1, self.x.shape[2])
        return (flat @ self.w[direction].T + bias).reshape(self.seq_length, self.batch, -1)

    def run(self, direction: int, projected: np.ndarray, step: Step, state: State) -> tuple[np.ndarray, State]:
        """Loop ``step`` over time for one direction; returns Y [seq, batch, hidden] and the final state."""
        lengths = self.lengths
        order: np.ndarray | None = None
        if self.reverse[direction]:
            if lengths is None:
                projected = projected[::-1]
            else:
                # Step s of batch b reads time L_b - 1 - s; past L_b the index is left alone, so the map is its
                # own inverse and the same gather puts Y back in time order.
                s = np.arange(self.seq_length)[:, None]
                order = np.where(s < lengths, lengths - 1 - s, s)[:, :, None]
                projected = np.take_along_axis(projected, order, axis=0)
        y = np.zeros((self.seq_length, self.batch, self.hidden), dtype=self.dtype)
        if lengths is None:
            for t in range(self.seq_length):
                state = step(projected[t], state)
                y[t] = state[0]
        else:
            for t in range(int(lengths.max(initial=0))):
                new_state = step(projected[t], state)
                active = (t < lengths)[:, None]
                state = tuple(np.where(active, new, old) for new, old in zip(new_state, state))
                y[t] = np.where(active, new_state[0], 0)
            # onnxruntime reports an all-zero final state for an empty sequence, not the initial state.
            empty = (lengths == 0)[:, None]
            state = tuple(np.where(empty, 0, s).astype(self.dtype, copy=False) for s in state)
        if self.reverse[direction]:
            y = y[::-1] if order is None else np.take_along_axis(y, order, axis=0)
        return y, state

    def outputs(self, ys: Sequence[np.ndarray], finals: Sequence[State], num_outputs: int) -> Any:
        """(Y, Y_h[, Y_c]) in the requested layout and dtype, cut to the outputs the node declares."""
        y = np.stack(ys, axis=1)  # [seq, num_directions, batch, hidden]
        states = [np.stack([final[k] for final in finals]) for k in range(len(finals[0]))]
        if self.layout:
            y = y.transpose(2, 0, 1, 3)
            states = [s.transpose(1, 0, 2) for s in states]
        results = [np.ascontiguousarray(v, dtype=self.out_dtype) for v in (y, *states)][:num_outputs]
        return results[0] if len(results) == 1 else tuple(results)


# One kernel per op serves every since-version: each attribute added or dropped over the versions has a
# default that reproduces the older behaviour (output_sequence, only in opset 1, is ignored as onnxruntime
# does: Y is produced whenever the node declares it; GRU before 3 had no linear_before_reset, i.e. 0; layout
# arrived in 14 with default 0). Opset 22 only widened the types. Each version is still registered, so the
# registry mirrors the schema history.


@kernel("RNN", since=1)
@kernel("RNN", since=7)
@kernel("RNN", since=14)
def RNN(
    X: np.ndarray,
    W: np.ndarray,
    R: np.ndarray,
    B: np.ndarray | None = None,
    sequence_lens: np.ndarray | None = None,
    initial_h: np.ndarray | None = None,
    *,
    activation_alpha: list[float] | None = None,
    activation_beta: list[float] | None = None,
    activations: list[str] | None = None,
    clip: float | None = None,
    direction: str = "forward",
    hidden_size: int | None = None,
    layout: int = 0,
    output_sequence: int = 0,
    _num_outputs: int = 2,
) -> Any:
    setup = _Setup(X, W, R, sequence_lens, direction, hidden_size, layout, 1)
    acts = setup.activations(activations, activation_alpha, activation_beta, ("Tanh",))
    clipped = _clipper(clip)
    wb, rb = setup.bias(B, 1)
    h0 = setup.initial(initial_h)
    ys, finals = [], []
    for d in range(setup.num_directions):
        (f,) = acts[d]
        r_t = setup.r[d].T

        def step(x_t: np.ndarray, state: State, f: Activation = f, r_t: np.ndarray = r_t) -> State:
            return (f(clipped(x_t + state[0] @ r_t)),)

        y, final = setup.run(d, setup.project(d, wb[d] + rb[d]), step, (h0[d],))
        ys.append(y)
        finals.append(final)
    return setup.outputs(ys, finals, _num_outputs)


@kernel("GRU", since=1)
@kernel("GRU", since=3)
@kernel("GRU", since=7)
@kernel("GRU", since=14)
def GRU(
    X: np.ndarray,
    W: np.ndarray,
    R: np.ndarray,
    B: np.ndarray | None = None,
    sequence_lens: np.ndarray | None = None,
    initial_h: np.ndarray | None = None,
    *,
    activation_alpha: list[float] | None = None,
    activation_beta: list[float] | None = None,
    activations: list[str] | None = None,
    clip: float | None = None,
    direction: str = "forward",
    hidden_size: int | None = None,
    layout: int = 0,
    linear_before_reset: int = 0,
    output_sequence: int = 0,
    _num_outputs: int = 2,
) -> Any:
    setup = _Setup(X, W, R, sequence_lens, direction, hidden_size, layout, 3)
    acts = setup.activations(activations, activation_alpha, activation_beta, ("Sigmoid", "Tanh"))
    clipped = _clipper(clip)
    wb, rb = setup.bias(B, 3)
    h0 = setup.initial(initial_h)
    hs = setup.hidden
    ys, finals = [], []
    for d in range(setup.num_directions):
        f, g = acts[d]
        r_zr_t, r_h_t = setup.r[d, : 2 * hs].T, setup.r[d, 2 * hs :].T
        bias = wb[d] + rb[d]
        if linear_before_reset:
            # Rb_h sits inside the reset product, so it cannot be folded into the input projection.
            bias = np.concatenate([bias[: 2 * hs], wb[d, 2 * hs :]])
        rb_h = rb[d, 2 * hs :]
        r_all_t = setup.r[d].T

        def step(
            x_t: np.ndarray,
            state: State,
            f: Activation = f,
            g: Activation = g,
            r_zr_t: np.ndarray = r_zr_t,
            r_h_t: np.ndarray = r_h_t,
            r_all_t: np.ndarray = r_all_t,
            rb_h: np.ndarray = rb_h,
        ) -> State:
            h = state[0]
            if linear_before_reset:
                rec = h @ r_all_t
                zr = x_t[:, : 2 * hs] + rec[:, : 2 * hs]
                z, r = f(clipped(zr[:, :hs])), f(clipped(zr[:, hs:]))
                candidate = g(clipped(x_t[:, 2 * hs :] + r * (rec[:, 2 * hs :] + rb_h)))
            else:
                zr = x_t[:, : 2 * hs] + h @ r_zr_t
                z, r = f(clipped(zr[:, :hs])), f(clipped(zr[:, hs:]))
                candidate = g(clipped(x_t[:, 2 * hs :] + (r * h) @ r_h_t))
            return ((1 - z) * candidate + z * h,)

        y, final = setup.run(d, setup.project(d, bias), step, (h0[d],))
        ys.append(y)
        finals.append(final)
    return setup.outputs(ys, finals, _num_outputs)


@kernel("LSTM", since=1)
@kernel("LSTM", since=7)
@kernel("LSTM", since=14)
def LSTM(
    X: np.ndarray,
    W: np.ndarray,
    R: np.ndarray,
    B: np.ndarray | None = None,
    sequence_lens: np.ndarray | None = None,
    initial_h: np.ndarray | None = None,
    initial_c: np.ndarray | None = None,
    P: np.ndarray | None = None,
    *,
    activation_alpha: list[float] | None = None,
    activation_beta: list[float] | None = None,
    activations: list[str] | None = None,
    clip: float | None = None,
    direction: str = "forward",
    hidden_size: int | None = None,
    input_forget: int = 0,
    layout: int = 0,
    output_sequence: int = 0,
    _num_outputs: int = 3,
) -> Any:
    setup = _Setup(X, W, R, sequence_lens, direction, hidden_size, layout, 4)
    acts = setup.activations(activations, activation_alpha, activation_beta, ("Sigmoid", "Tanh", "Tanh"))
    clipped = _clipper(clip)
    wb, rb = setup.bias(B, 4)
    h0, c0 = setup.initial(initial_h), setup.initial(initial_c)
    hs = setup.hidden
    peep: np.ndarray | None = None
    if P is not None:
        peep = P.astype(setup.dtype, copy=False)
        if peep.shape != (setup.num_directions, 3 * hs):
            raise InvalidArgument(f"P: expected shape {(setup.num_directions, 3 * hs)}, got {P.shape}")
    ys, finals = [], []
    for d in range(setup.num_directions):
        f, g, h_act = acts[d]
        p_i, p_o, p_f = (None, None, None) if peep is None else (peep[d, :hs], peep[d, hs : 2 * hs], peep[d, 2 * hs :])

        def step(
            x_t: np.ndarray,
            state: State,
            f: Activation = f,
            g: Activation = g,
            h_act: Activation = h_act,
            r_t: np.ndarray = setup.r[d].T,
            p_i: np.ndarray | None = p_i,
            p_o: np.ndarray | None = p_o,
            p_f: np.ndarray | None = p_f,
        ) -> State:
            h, c = state
            gates = x_t + h @ r_t
            i, o, fg, cell = gates[:, :hs], gates[:, hs : 2 * hs], gates[:, 2 * hs : 3 * hs], gates[:, 3 * hs :]
            if p_i is not None:
                i = i + p_i * c
                fg = fg + p_f * c
            i = f(clipped(i))
            fg = 1 - i if input_forget else f(clipped(fg))
            c_new = fg * c + i * g(clipped(cell))
            if p_o is not None:
                o = o + p_o * c_new
            return f(clipped(o)) * h_act(c_new), c_new

        y, final = setup.run(d, setup.project(d, wb[d] + rb[d]), step, (h0[d], c0[d]))
        ys.append(y)
        finals.append(final)
    return setup.outputs(ys, finals, _num_outputs)
