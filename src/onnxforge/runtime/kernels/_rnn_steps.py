"""The per-step updates of RNN, GRU and LSTM (the math is in ``rnn``'s docstring), written for speed.

Each builder allocates its buffers once per run and direction and returns a ``Cell``. Its step gets
``x_t``, the step's input projection [gates, batch, hidden], and does the recurrent GEMM as one batched
``H_{t-1} @ r_t`` (``r_t`` = the packed [gates, hidden, hidden] R^T blocks) into a gate-major
[gates, batch, hidden] buffer, so every gate is a contiguous block (see ``_rnn_cell``); activations run in
place. Gate blocks arrive in the order the op's ``Packed`` laid them out.
"""

from __future__ import annotations

import numpy as np

from onnxforge.runtime.kernels._rnn_cell import Cell, InPlace

# LSTM gates are laid out i | f | c | o inside the kernel (ONNX's order is i | o | f | c), so i, f and c,
# which a peephole step activates before o, are adjacent.
LSTM_ORDER = (0, 2, 3, 1)
# Default activations and no clip ("exp form"): sigmoid(x) = 1 / (1 + exp(-x)) and tanh(x) =
# 2 / (1 + exp(-2x)) - 1, so with the rows of i, f, o scaled by -1 and those of c by -2 at pack time, one exp,
# one add and one reciprocal over the whole gates buffer activate all four gates (numpy's exp is cheaper
# than its tanh, and 5 calls replace 9). exp overflowing to inf yields the right limits (sigmoid 0, tanh -1).
LSTM_EXP_SCALE = (-1.0, -1.0, -2.0, -1.0)


def rnn_cell(r_t: np.ndarray, f: InPlace) -> Cell:
    r_t = r_t[0]

    def step(x_t: np.ndarray, h: np.ndarray, h_out: np.ndarray) -> None:
        np.matmul(h, r_t, out=h_out)
        np.add(h_out, x_t[0], out=h_out)
        f(h_out, h_out)

    return Cell(step)


def gru_cell(r_t: np.ndarray, f: InPlace, g: InPlace, rb_h: np.ndarray, linear_before_reset: int, batch: int) -> Cell:
    hs = r_t.shape[1]
    gates = np.empty((3, batch, hs), dtype=r_t.dtype)  # z | r | candidate
    tmp = np.empty((batch, hs), dtype=r_t.dtype)
    zr, z, reset, candidate = gates[:2], gates[0], gates[1], gates[2]
    r_zr_t, r_h_t = r_t[:2], r_t[2]

    def step(x_t: np.ndarray, h: np.ndarray, h_out: np.ndarray) -> None:
        if linear_before_reset:
            np.matmul(h, r_t, out=gates)
            np.add(zr, x_t[:2], out=zr)
            f(zr, zr)
            np.add(candidate, rb_h, out=candidate)
            np.multiply(candidate, reset, out=candidate)
        else:
            np.matmul(h, r_zr_t, out=zr)
            np.add(zr, x_t[:2], out=zr)
            f(zr, zr)
            np.multiply(reset, h, out=tmp)
            np.matmul(tmp, r_h_t, out=candidate)
        np.add(candidate, x_t[2], out=candidate)
        g(candidate, candidate)
        # (1 - z) h~ + z H = h~ + z (H - h~)
        np.subtract(h, candidate, out=tmp)
        np.multiply(tmp, z, out=tmp)
        np.add(candidate, tmp, out=h_out)

    return Cell(step)


def _exp_sigmoid(x: np.ndarray) -> None:
    """sigmoid(-x) in place: the exp form's gates hold minus the pre-activation."""
    np.exp(x, out=x)
    np.add(x, 1, out=x)
    np.reciprocal(x, out=x)


def lstm_cell(
    r_t: np.ndarray,
    acts: tuple[InPlace, InPlace, InPlace],
    peepholes: np.ndarray | None,
    input_forget: int,
    c: np.ndarray,
    exp_form: bool,
) -> Cell:
    """One direction's step over gates i | f | c | o (``LSTM_ORDER``), pre-scaled in the exp form.

    ``c`` is the cell state, updated in place; ``peepholes`` are P[d] in ONNX order (i | o | f), unscaled.
    """
    f, g, h_act = acts
    batch, hs = c.shape
    gates = np.empty((4, batch, hs), dtype=c.dtype)
    tmp = np.empty((batch, hs), dtype=c.dtype)
    i, fg, cell, o = gates
    i_f, i_f_c = gates[:2], gates[:3]
    p_i = p_o = p_f = None
    if peepholes is not None:
        # The exp form scales the whole pre-activation, peephole term included.
        peep = -peepholes if exp_form else peepholes
        p_i, p_o, p_f = peep[:hs], peep[hs : 2 * hs], peep[2 * hs :]
    all_at_once = exp_form and p_o is None  # o needs no C_t, so every gate is activated in one pass

    def step(x_t: np.ndarray, h: np.ndarray, h_out: np.ndarray) -> None:
        np.matmul(h, r_t, out=gates)
        np.add(gates, x_t, out=gates)
        if p_i is not None:
            np.multiply(c, p_i, out=tmp)
            np.add(i, tmp, out=i)
            np.multiply(c, p_f, out=tmp)
            np.add(fg, tmp, out=fg)
        if exp_form:
            _exp_sigmoid(gates if all_at_once else i_f_c)
            np.multiply(cell, 2, out=cell)
            np.subtract(cell, 1, out=cell)
        else:
            f(i_f, i_f)
            g(cell, cell)
        if input_forget:
            np.subtract(1, i, out=fg)
        np.multiply(c, fg, out=c)
        np.multiply(i, cell, out=tmp)
        np.add(c, tmp, out=c)
        if p_o is not None:
            np.multiply(c, p_o, out=tmp)
            np.add(o, tmp, out=o)
        if exp_form and not all_at_once:
            _exp_sigmoid(o)
        elif not exp_form:
            f(o, o)
        h_act(c, tmp)
        np.multiply(o, tmp, out=h_out)

    return Cell(step, [c])
