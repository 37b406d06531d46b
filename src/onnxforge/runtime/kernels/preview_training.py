"""Optimizer steps of the ai.onnx.preview.training domain: Adagrad, Adam and Momentum.

Each node takes the learning rate ``R`` and step count ``T`` (scalars), then ``n`` tensors to optimize and
their per-tensor state in blocks: ``X_1..X_n, G_1..G_n, <state_1>..<state_n>``; it returns the updated
tensors then the updated states in the same block order. With ``g = norm_coefficient * X + G``:

- Adagrad (state ``H``): ``r = R / (1 + T * decay_factor)``, ``H' = H + g * g``,
  ``X' = X - r * g / (sqrt(H') + epsilon)``.
- Adam (states ``V``, ``H``): ``V' = alpha * V + (1 - alpha) * g``, ``H' = beta * H + (1 - beta) * g * g``,
  ``r = R * sqrt(1 - beta**T) / (1 - alpha**T)`` if ``T > 0`` else ``R``,
  ``X' = (1 - norm_coefficient_post) * (X - r * V' / (sqrt(H') + epsilon))``.
- Momentum (state ``V``): ``V' = alpha * V + beta' * g`` with ``beta' = beta`` if ``T > 0`` else 1; standard
  mode ``X' = X - R * V'``, nesterov mode ``X' = X - R * (g + alpha * V')``.

Arithmetic runs in float64 and each output keeps its input's dtype.
"""

from __future__ import annotations

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels._args import scalar_value
from onnxforge.runtime.registry import kernel

DOMAIN = "ai.onnx.preview.training"


def _blocks(inputs: tuple[np.ndarray, ...], per_tensor: int, op: str) -> list[list[np.ndarray]]:
    """Split ``X..., G..., S1..., S2...`` into ``per_tensor`` lists of ``n`` tensors each."""
    if not inputs or len(inputs) % per_tensor:
        raise InvalidArgument(
            f"{op}: after R and T the inputs must come in {per_tensor} blocks of equal length, got {len(inputs)} inputs"
        )
    n = len(inputs) // per_tensor
    groups = [list(inputs[i * n : (i + 1) * n]) for i in range(per_tensor)]
    for i in range(n):
        shapes = {tuple(group[i].shape) for group in groups}
        if len(shapes) != 1:
            raise InvalidArgument(f"{op}: tensor {i} and its gradient/state have different shapes {sorted(shapes)}")
    return groups


def _scalars(R: np.ndarray, T: np.ndarray, op: str) -> tuple[float, int]:
    return float(scalar_value(R, f"{op}'s R")), int(scalar_value(T, f"{op}'s T"))


def _f64(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64)


@kernel("Adagrad", since=1, domain=DOMAIN)
def Adagrad(
    R: np.ndarray,
    T: np.ndarray,
    *inputs: np.ndarray,
    decay_factor: float = 0.0,
    epsilon: float = 1e-6,
    norm_coefficient: float = 0.0,
) -> tuple[np.ndarray, ...]:
    rate, step = _scalars(R, T, "Adagrad")
    xs, gs, hs = _blocks(inputs, 3, "Adagrad")
    r = rate / (1.0 + step * decay_factor)
    new_x, new_h = [], []
    for x, g, h in zip(xs, gs, hs):
        g_reg = norm_coefficient * _f64(x) + _f64(g)
        h_new = _f64(h) + g_reg * g_reg
        x_new = _f64(x) - r * g_reg / (np.sqrt(h_new) + epsilon)
        new_x.append(x_new.astype(x.dtype))
        new_h.append(h_new.astype(h.dtype))
    return tuple(new_x + new_h)


@kernel("Adam", since=1, domain=DOMAIN)
def Adam(
    R: np.ndarray,
    T: np.ndarray,
    *inputs: np.ndarray,
    alpha: float = 0.9,
    beta: float = 0.999,
    epsilon: float = 1e-6,
    norm_coefficient: float = 0.0,
    norm_coefficient_post: float = 0.0,
) -> tuple[np.ndarray, ...]:
    rate, step = _scalars(R, T, "Adam")
    xs, gs, vs, hs = _blocks(inputs, 4, "Adam")
    r = rate * np.sqrt(1.0 - beta**step) / (1.0 - alpha**step) if step > 0 else rate
    new_x, new_v, new_h = [], [], []
    for x, g, v, h in zip(xs, gs, vs, hs):
        g_reg = norm_coefficient * _f64(x) + _f64(g)
        v_new = alpha * _f64(v) + (1.0 - alpha) * g_reg
        h_new = beta * _f64(h) + (1.0 - beta) * (g_reg * g_reg)
        x_new = (1.0 - norm_coefficient_post) * (_f64(x) - r * (v_new / (np.sqrt(h_new) + epsilon)))
        new_x.append(x_new.astype(x.dtype))
        new_v.append(v_new.astype(v.dtype))
        new_h.append(h_new.astype(h.dtype))
    return tuple(new_x + new_v + new_h)


@kernel("Momentum", since=1, domain=DOMAIN)
def Momentum(
    R: np.ndarray,
    T: np.ndarray,
    *inputs: np.ndarray,
    alpha: float,
    beta: float,
    mode: str,
    norm_coefficient: float,
) -> tuple[np.ndarray, ...]:
    if mode not in ("standard", "nesterov"):
        raise InvalidArgument(f"Momentum: mode must be 'standard' or 'nesterov', got '{mode}'")
    rate, step = _scalars(R, T, "Momentum")
    xs, gs, vs = _blocks(inputs, 3, "Momentum")
    beta_t = beta if step > 0 else 1.0
    new_x, new_v = [], []
    for x, g, v in zip(xs, gs, vs):
        g_reg = norm_coefficient * _f64(x) + _f64(g)
        v_new = alpha * _f64(v) + beta_t * g_reg
        update = v_new if mode == "standard" else g_reg + alpha * v_new
        new_x.append((_f64(x) - rate * update).astype(x.dtype))
        new_v.append(v_new.astype(v.dtype))
    return tuple(new_x + new_v)
