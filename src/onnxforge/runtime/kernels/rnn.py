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
projection ``X W^T + biases`` is one matmul over all steps and directions; each step then does only the
recurrent matmul into a preallocated gate-major buffer, activations in place (``_rnn_cell`` has the loop and
its speed rules, ``_rnn_overlap`` how it runs at several threads, ``_rnn_steps`` the steps, including the
LSTM's exp form for its default activations).
``prepare`` packs W and R (and B) once per node when they are constant; otherwise each run packs them.
With ``sequence_lens``, batch entry b runs its first L_b steps (the reverse direction walks them backwards
from L_b - 1), Y is zero past L_b and Y_h / Y_c hold the state after the last valid step (zero when L_b is 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels._rnn_cell import Cell, InPlace, Packed, Run, activations, clipped, compute_dtype
from onnxforge.runtime.kernels._rnn_overlap import drive
from onnxforge.runtime.kernels._rnn_steps import LSTM_EXP_SCALE, LSTM_ORDER, gru_cell, lstm_cell, rnn_cell
from onnxforge.runtime.registry import kernel


def _num_directions(direction: str) -> int:
    if direction not in ("forward", "reverse", "bidirectional"):
        raise InvalidArgument(f"direction: expected forward, reverse or bidirectional, got '{direction}'")
    return 2 if direction == "bidirectional" else 1


def _acts(
    names: list[str] | None,
    alphas: list[float] | None,
    betas: list[float] | None,
    defaults: tuple[str, ...],
    num_directions: int,
    clip: float | None,
) -> list[tuple[InPlace, ...]]:
    """Per direction, the activations with ``clip`` applied to their input."""
    built = activations(tuple(names or ()), tuple(alphas or ()), tuple(betas or ()), defaults, num_directions)
    return [tuple(clipped(act, clip) for act in per_direction) for per_direction in built]


Pack = Callable[..., Packed]  # pack(W, R, B, dtype, **attributes): the op's weight layout


def _preparer(pack: Pack, run: Callable[..., Any], unpacked: Callable[..., Any]) -> Callable[..., Any]:
    """``prepare`` for a recurrent op: W and R (and B when constant) packed once for the node."""

    def prepare(constants: list[Any], **attrs: Any) -> Callable[..., Any] | None:
        W, R = (constants + [None, None, None])[1:3]
        B = constants[3] if len(constants) > 3 and isinstance(constants[3], np.ndarray) else None
        if not isinstance(W, np.ndarray) or not isinstance(R, np.ndarray):
            return None
        try:
            packed = pack(W, R, B, compute_dtype(W.dtype), **attrs)
        except InvalidArgument:
            return None  # the unpacked kernel raises it again, at run time, where the plan reports it

        def packed_kernel(X: np.ndarray, W: np.ndarray, R: np.ndarray, B: np.ndarray | None = None, *rest: Any) -> Any:
            if compute_dtype(X.dtype) is not packed.dtype:
                return unpacked(X, W, R, B, *rest, **attrs)
            bias = packed.packed_bias if packed.packed_bias is not None else packed.bias(B)
            return run(X, packed, bias, *rest, **attrs)

        return packed_kernel

    return prepare


# ----- RNN -------------------------------------------------------------------------------------------------
def _rnn(
    X: np.ndarray,
    packed: Packed,
    bias: tuple[np.ndarray, list[np.ndarray]],
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
    run = Run(X, packed, sequence_lens, direction, layout)
    acts = _acts(activations, activation_alpha, activation_beta, ("Tanh",), packed.num_directions, clip)
    return drive(run, initial_h, bias[0], lambda d: rnn_cell(packed.r_t[d], *acts[d]), _num_outputs)


# One kernel per op serves every since-version: each attribute added or dropped over the versions has a
# default that reproduces the older behaviour (output_sequence, only in opset 1, is ignored as onnxruntime
# does: Y is produced whenever the node declares it; GRU before 3 had no linear_before_reset, i.e. 0; layout
# arrived in 14 with default 0). Opset 22 only widened the types. Each version is still registered, so the
# registry mirrors the schema history. The unpacked kernel packs per call (W or R computed in the graph).


def _pack_rnn(
    W: np.ndarray,
    R: np.ndarray,
    B: np.ndarray | None,
    dtype: Any,
    *,
    direction: str = "forward",
    hidden_size: int | None = None,
    **_: Any,
) -> Packed:
    return Packed(W, R, B, 1, dtype, _num_directions(direction), hidden_size)


_prepare_rnn = _preparer(_pack_rnn, _rnn, lambda *args, **kw: RNN(*args, **kw))


@kernel("RNN", since=1, prepare=_prepare_rnn)
@kernel("RNN", since=7, prepare=_prepare_rnn)
@kernel("RNN", since=14, prepare=_prepare_rnn)
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
    packed = _pack_rnn(W, R, None, compute_dtype(X.dtype), direction=direction, hidden_size=hidden_size)
    return _rnn(
        X,
        packed,
        packed.bias(B),
        sequence_lens,
        initial_h,
        activation_alpha=activation_alpha,
        activation_beta=activation_beta,
        activations=activations,
        clip=clip,
        direction=direction,
        layout=layout,
        _num_outputs=_num_outputs,
    )


# ----- GRU -------------------------------------------------------------------------------------------------
def _gru(
    X: np.ndarray,
    packed: Packed,
    bias: tuple[np.ndarray, list[np.ndarray]],
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
    run = Run(X, packed, sequence_lens, direction, layout)
    acts = _acts(activations, activation_alpha, activation_beta, ("Sigmoid", "Tanh"), packed.num_directions, clip)
    projection_bias, rb_h = bias

    def make_cell(d: int) -> Cell:
        return gru_cell(packed.r_t[d], *acts[d], rb_h[d], linear_before_reset, run.batch)

    return drive(run, initial_h, projection_bias, make_cell, _num_outputs)


def _pack_gru(
    W: np.ndarray,
    R: np.ndarray,
    B: np.ndarray | None,
    dtype: Any,
    *,
    direction: str = "forward",
    hidden_size: int | None = None,
    linear_before_reset: int = 0,
    **_: Any,
) -> Packed:
    return Packed(W, R, B, 3, dtype, _num_directions(direction), hidden_size, keep_rb_h=bool(linear_before_reset))


_prepare_gru = _preparer(_pack_gru, _gru, lambda *args, **kw: GRU(*args, **kw))


@kernel("GRU", since=1, prepare=_prepare_gru)
@kernel("GRU", since=3, prepare=_prepare_gru)
@kernel("GRU", since=7, prepare=_prepare_gru)
@kernel("GRU", since=14, prepare=_prepare_gru)
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
    packed = _pack_gru(
        W,
        R,
        None,
        compute_dtype(X.dtype),
        direction=direction,
        hidden_size=hidden_size,
        linear_before_reset=linear_before_reset,
    )
    return _gru(
        X,
        packed,
        packed.bias(B),
        sequence_lens,
        initial_h,
        activation_alpha=activation_alpha,
        activation_beta=activation_beta,
        activations=activations,
        clip=clip,
        direction=direction,
        layout=layout,
        linear_before_reset=linear_before_reset,
        _num_outputs=_num_outputs,
    )


# ----- LSTM ------------------------------------------------------------------------------------------------
_LSTM_DEFAULTS = ("Sigmoid", "Tanh", "Tanh")


def _exp_form(activations: list[str] | None, clip: float | None) -> bool:
    names = [name.lower() for name in activations or ()]
    default = [name.lower() for name in _LSTM_DEFAULTS]
    return clip is None and names in ([], default, default * 2)


def _pack_lstm(
    W: np.ndarray,
    R: np.ndarray,
    B: np.ndarray | None,
    dtype: Any,
    *,
    activations: list[str] | None = None,
    clip: float | None = None,
    direction: str = "forward",
    hidden_size: int | None = None,
    **_: Any,
) -> Packed:
    scale = LSTM_EXP_SCALE if _exp_form(activations, clip) else None
    dirs = _num_directions(direction)
    return Packed(W, R, B, 4, dtype, dirs, hidden_size, gate_order=LSTM_ORDER, gate_scale=scale)


def _lstm(
    X: np.ndarray,
    packed: Packed,
    bias: tuple[np.ndarray, list[np.ndarray]],
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
    run = Run(X, packed, sequence_lens, direction, layout)
    dirs, hs = packed.num_directions, packed.hidden
    clipped_acts = _acts(activations, activation_alpha, activation_beta, _LSTM_DEFAULTS, dirs, clip)
    # clip bounds f's and g's inputs, not h's input C_t (onnxruntime).
    plain_acts = _acts(activations, activation_alpha, activation_beta, _LSTM_DEFAULTS, dirs, None)
    peep: np.ndarray | None = None
    if P is not None:
        peep = P.astype(packed.dtype, copy=False)
        if peep.shape != (dirs, 3 * hs):
            raise InvalidArgument(f"P: expected shape {(dirs, 3 * hs)}, got {P.shape}")
    c0 = run.initial(initial_c)
    exp_form = _exp_form(activations, clip)  # as _pack_lstm decided from the same attributes

    def make_cell(d: int) -> Cell:
        acts = (clipped_acts[d][0], clipped_acts[d][1], plain_acts[d][2])
        return lstm_cell(packed.r_t[d], acts, None if peep is None else peep[d], input_forget, c0[d], exp_form)

    return drive(run, initial_h, bias[0], make_cell, _num_outputs)


_prepare_lstm = _preparer(_pack_lstm, _lstm, lambda *args, **kw: LSTM(*args, **kw))


@kernel("LSTM", since=1, prepare=_prepare_lstm)
@kernel("LSTM", since=7, prepare=_prepare_lstm)
@kernel("LSTM", since=14, prepare=_prepare_lstm)
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
    dtype = compute_dtype(X.dtype)
    packed = _pack_lstm(
        W, R, None, dtype, activations=activations, clip=clip, direction=direction, hidden_size=hidden_size
    )
    return _lstm(
        X,
        packed,
        packed.bias(B),
        sequence_lens,
        initial_h,
        initial_c,
        P,
        activation_alpha=activation_alpha,
        activation_beta=activation_beta,
        activations=activations,
        clip=clip,
        direction=direction,
        input_forget=input_forget,
        layout=layout,
        _num_outputs=_num_outputs,
    )
