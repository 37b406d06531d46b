"""Gemm, MatMul, Einsum and Det against onnx's reference evaluator on generated shapes and attributes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.runtime.kernels.test_conv import (
    assert_matches,
    feeds_of,
    node_model,
    random,
    run_ours,
    run_reference,
    seeds,
)

dims = st.integers(1, 5)


def array(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    if np.dtype(dtype).kind in "iu":
        return rng.integers(0 if np.dtype(dtype).kind == "u" else -5, 6, size=shape).astype(dtype)
    return random(rng, shape, dtype)


def compare(op: str, inputs: list[tuple[str, np.ndarray | None, bool]], dtype: Any, opset: int, **attrs: Any) -> None:
    """Ours vs the reference (run in float32 for halves, whose matmuls we also accumulate in float32)."""
    (got,) = run_ours(node_model(op, inputs, opset=opset, **attrs), feeds_of(inputs))
    wide = [(n, v.astype(np.float32) if v is not None and v.dtype == np.float16 else v, c) for n, v, c in inputs]
    (want,) = run_reference(node_model(op, wide, opset=opset, **attrs), feeds_of(wide))
    if np.dtype(dtype).kind in "iu":
        assert got.dtype == np.dtype(dtype) and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    else:
        assert_matches(got, want, dtype)


@settings(max_examples=30, deadline=None)
@given(
    dims,
    dims,
    dims,
    st.integers(0, 1),
    st.integers(0, 1),
    st.sampled_from([1.0, 0.5, -2.0]),
    st.sampled_from([1.0, 0.0, 0.25]),
    st.sampled_from(["none", "scalar", "row", "column", "full", "single"]),
    st.sampled_from([7, 9, 11, 13]),
    st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.int64]),
    st.booleans(),
    seeds,
)
def test_gemm(
    m: int,
    k: int,
    n: int,
    trans_a: int,
    trans_b: int,
    alpha: float,
    beta: float,
    bias: str,
    opset: int,
    dtype: Any,
    constant: bool,
    seed: int,
) -> None:
    if np.dtype(dtype).kind in "iu" and opset < 9:
        opset = 9  # integer Gemm arrived in opset 9
    if bias == "none" and opset < 11:
        bias = "full"  # C became optional in opset 11
    rng = np.random.default_rng(seed)
    a = array(rng, (k, m) if trans_a else (m, k), dtype)
    b = array(rng, (n, k) if trans_b else (k, n), dtype)
    c_shape = {"none": None, "scalar": (), "row": (n,), "column": (m, 1), "full": (m, n), "single": (1,)}[bias]
    c = None if c_shape is None else array(rng, c_shape, dtype)
    inputs = [("A", a, False), ("B", b, constant), ("C", c, constant)]
    compare("Gemm", inputs, dtype, opset, alpha=alpha, beta=beta, transA=trans_a, transB=trans_b)


def test_gemm_opset_6_broadcast_attribute() -> None:
    rng = np.random.default_rng(0)
    a, b, c = random(rng, (3, 4)), random(rng, (4, 2)), random(rng, (2,))
    inputs = [("A", a, False), ("B", b, True), ("C", c, True)]
    (got,) = run_ours(node_model("Gemm", inputs, opset=6, broadcast=1, alpha=0.5), {"A": a})
    assert_matches(got, 0.5 * a @ b + c, np.float32)


batch_shapes = st.lists(st.integers(1, 3), max_size=3).map(tuple)


@settings(max_examples=30, deadline=None)
@given(
    batch_shapes,
    batch_shapes,
    dims,
    dims,
    dims,
    st.sampled_from(["both", "a1", "b1", "11"]),
    st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.int64, np.uint32]),
    st.booleans(),
    seeds,
)
def test_matmul(
    batch_a: tuple[int, ...],
    batch_b: tuple[int, ...],
    m: int,
    k: int,
    n: int,
    vectors: str,
    dtype: Any,
    constant: bool,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    # Make the batch dims broadcastable: equal, or 1 on one side.
    width = max(len(batch_a), len(batch_b))
    pa, pb = (1,) * (width - len(batch_a)) + batch_a, (1,) * (width - len(batch_b)) + batch_b
    batch_b = tuple(y if x in (1, y) or y == 1 else x for x, y in zip(pa, pb))[width - len(batch_b) :]
    a_shape = (k,) if vectors in ("a1", "11") else (*batch_a, m, k)
    b_shape = (k,) if vectors in ("b1", "11") else (*batch_b, k, n)
    inputs = [("A", array(rng, a_shape, dtype), False), ("B", array(rng, b_shape, dtype), constant)]
    compare("MatMul", inputs, dtype, opset=13)


def test_matmul_stack_by_matrix_uses_one_product_and_keeps_views_right() -> None:
    rng = np.random.default_rng(2)
    a = random(rng, (2, 3, 5, 4))
    b = random(rng, (4, 6))
    transposed = np.swapaxes(random(rng, (2, 3, 4, 5)), -1, -2)  # not contiguous: the folded path must not apply
    for left in (a, transposed):
        (got,) = run_ours(node_model("MatMul", [("A", left, False), ("B", b, True)], opset=13), {"A": left})
        assert_matches(got, left @ b, np.float32)


EQUATIONS = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("ii->i", [(4, 4)]),
    ("ii", [(3, 3)]),
    ("i,i", [(5,), (5,)]),
    ("ij->ji", [(2, 3)]),
    ("...ij,...jk", [(2, 1, 3, 4), (5, 4, 2)]),
    ("bii->bi", [(2, 3, 3)]),
    ("ij", [(2, 3)]),
    ("ijk->", [(2, 3, 4)]),
    ("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 2)]),
    (" ij , jk -> ik ", [(3, 4), (4, 2)]),
    ("Ab,bA->", [(3, 4), (4, 3)]),
    ("i,j->ij", [(3,), (4,)]),
]


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from(EQUATIONS),
    st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.int64]),
    st.booleans(),
    seeds,
)
def test_einsum(case: tuple[str, list[tuple[int, ...]]], dtype: Any, constant: bool, seed: int) -> None:
    equation, shapes = case
    rng = np.random.default_rng(seed)
    inputs = [(f"x{i}", array(rng, shape, dtype), constant and i > 0) for i, shape in enumerate(shapes)]
    compare("Einsum", inputs, dtype, opset=12, equation=equation)


@pytest.mark.parametrize("equation", ["ij->ji", "ii->i", "ij"])
def test_einsum_relabelling_does_not_alias_its_input(equation: str) -> None:
    from onnxforge.runtime.kernels import linalg

    x = np.arange(9, dtype=np.float32).reshape(3, 3)
    y = linalg.Einsum(x, equation=equation)
    assert not np.may_share_memory(x, y)
    np.testing.assert_array_equal(y, np.einsum(equation, x))


def test_einsum_bfloat16_at_opset_28() -> None:
    import ml_dtypes

    rng = np.random.default_rng(0)
    a, b = random(rng, (2, 3)).astype(ml_dtypes.bfloat16), random(rng, (3, 4)).astype(ml_dtypes.bfloat16)
    (got,) = run_ours(
        node_model("Einsum", [("a", a, False), ("b", b, False)], opset=28, equation="ij,jk->ik"), {"a": a, "b": b}
    )
    assert got.dtype == ml_dtypes.bfloat16
    np.testing.assert_allclose(
        got.astype(np.float32), a.astype(np.float32) @ b.astype(np.float32), rtol=2e-2, atol=2e-2
    )


@settings(max_examples=20, deadline=None)
@given(
    st.lists(st.integers(1, 3), max_size=2).map(tuple),
    st.integers(1, 4),
    st.sampled_from([np.float32, np.float64, np.float16]),
    seeds,
)
def test_det(batch: tuple[int, ...], n: int, dtype: Any, seed: int) -> None:
    x = random(np.random.default_rng(seed), (*batch, n, n), dtype)
    compare("Det", [("X", x, False)], dtype, opset=22)


@pytest.mark.parametrize("op", ["Gemm", "MatMul"])
def test_shape_mismatch_is_invalid_argument(op: str) -> None:
    from onnxforge import InvalidArgument

    a, b = np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32)
    with pytest.raises(InvalidArgument, match="agree"):
        run_ours(node_model(op, [("A", a, False), ("B", b, False)], opset=13), {"A": a, "B": b})
