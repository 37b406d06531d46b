"""The fusion passes: weights and biases absorb BatchNormalization and per-channel affine ops; MatMul+Add
becomes Gemm; Pad moves into Conv/Pool. Each checks op counts and numbers before and after."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import helper

from onnxforge.passes.fuse_bn_affine import FuseBatchNormAffinePass
from onnxforge.passes.fuse_conv_affine import FuseConvAffinePass
from onnxforge.passes.fuse_conv_bn import FuseConvBatchNormPass
from onnxforge.passes.fuse_gemm_bn import FuseGemmBatchNormPass
from onnxforge.passes.fuse_pad import FusePadIntoConvPoolPass
from onnxforge.passes.matmul_add_to_gemm import MatMulAddToGemmPass

from .helpers import F, apply, assert_same_outputs, cleaned, init, make_model, ops, rand, tensor_info

RNG = np.random.default_rng(1)


def _bn_inits(prefix: str, channels: int) -> list[object]:
    return [
        init(f"{prefix}s", RNG.uniform(0.5, 2, channels).astype(np.float32)),
        init(f"{prefix}b", RNG.standard_normal(channels).astype(np.float32)),
        init(f"{prefix}m", RNG.standard_normal(channels).astype(np.float32)),
        init(f"{prefix}v", RNG.uniform(0.5, 2, channels).astype(np.float32)),
    ]


def _bn(x: str, y: str, prefix: str = "bn_") -> object:
    return helper.make_node(
        "BatchNormalization", [x, f"{prefix}s", f"{prefix}b", f"{prefix}m", f"{prefix}v"], [y], epsilon=1e-3
    )


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("group", [1, 2])
def test_conv_bn(with_bias: bool, group: int) -> None:
    inputs = ["x", "w", "cb"] if with_bias else ["x", "w"]
    model = make_model(
        [helper.make_node("Conv", inputs, ["c"], pads=[1, 1, 1, 1], group=group), _bn("c", "y")],
        [tensor_info("x", F, [1, 4, 6, 6])],
        [tensor_info("y", F, [1, 6, 6, 6])],
        [init("w", rand(6, 4 // group, 3, 3, seed=2)), init("cb", rand(6, seed=3)), *_bn_inits("bn_", 6)],
    )
    result, modified = apply(model, FuseConvBatchNormPass())
    assert modified and ops(cleaned(result)) == {"Conv": 1}
    assert_same_outputs(model, result, {"x": rand(1, 4, 6, 6)}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("op", "shape", "swap"),
    [
        ("Mul", (6, 1, 1), False),
        ("Mul", (1, 6, 1, 1), True),
        ("Add", (6, 1, 1), True),
        ("Sub", (), False),
        ("Div", (6, 1, 1), False),
    ],
)
def test_conv_per_channel_affine(op: str, shape: tuple[int, ...], swap: bool) -> None:
    c = RNG.uniform(0.5, 2, shape).astype(np.float32)
    operands = ["k", "c"] if swap else ["c", "k"]
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node(op, operands, ["y"])],
        [tensor_info("x", F, [2, 3, 5, 5])],
        [tensor_info("y", F, [2, 6, 3, 3])],
        [init("w", rand(6, 3, 3, 3, seed=4)), init("k", c)],
    )
    result, modified = apply(model, FuseConvAffinePass())
    assert modified and ops(cleaned(result)) == {"Conv": 1}
    assert_same_outputs(model, result, {"x": rand(2, 3, 5, 5)}, rtol=1e-4, atol=1e-4)


def test_conv_affine_that_broadcasts_wider_is_kept() -> None:
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Mul", ["c", "k"], ["y"])],
        [tensor_info("x", F, [1, 3, 5, 5])],
        [tensor_info("y", F, [2, 1, 6, 3, 3])],
        [init("w", rand(6, 3, 3, 3)), init("k", np.ones((2, 1, 6, 1, 1), dtype=np.float32))],
    )
    _, modified = apply(model, FuseConvAffinePass())
    assert not modified


def test_bn_then_mul_then_add_becomes_one_bn() -> None:
    model = make_model(
        [_bn("x", "b"), helper.make_node("Mul", ["b", "sc"], ["m"]), helper.make_node("Add", ["m", "sh"], ["y"])],
        [tensor_info("x", F, [2, 5, 4, 4])],
        [tensor_info("y", F, [2, 5, 4, 4])],
        [*_bn_inits("bn_", 5), init("sc", rand(5, 1, 1, seed=5)), init("sh", rand(5, 1, 1, seed=6))],
    )
    result, modified = apply(model, FuseBatchNormAffinePass(), FuseBatchNormAffinePass())
    assert modified and ops(cleaned(result)) == {"BatchNormalization": 1}
    assert_same_outputs(model, result, {"x": rand(2, 5, 4, 4)}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("trans_b", "bias_shape"), [(0, (4,)), (1, (1, 4)), (1, None), (0, (3, 1))])
def test_gemm_bn(trans_b: int, bias_shape: tuple[int, ...] | None) -> None:
    inputs = ["a", "b"] + (["c"] if bias_shape else [])
    inits = [init("b", rand(*((4, 5) if trans_b else (5, 4)), seed=7)), *_bn_inits("bn_", 4)]
    if bias_shape:
        inits.append(init("c", rand(*bias_shape, seed=8)))
    model = make_model(
        [helper.make_node("Gemm", inputs, ["g"], transB=trans_b, alpha=0.5, beta=2.0), _bn("g", "y")],
        [tensor_info("a", F, [3, 5])],
        [tensor_info("y", F, [3, 4])],
        inits,
    )
    result, modified = apply(model, FuseGemmBatchNormPass())
    assert modified and ops(cleaned(result)) == {"Gemm": 1}
    assert_same_outputs(model, result, {"a": rand(3, 5)}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bias_shape", [(4,), (1, 4), (3, 4), ()])
def test_matmul_add_to_gemm(bias_shape: tuple[int, ...]) -> None:
    model = make_model(
        [helper.make_node("MatMul", ["a", "b"], ["m"]), helper.make_node("Add", ["bias", "m"], ["y"])],
        [tensor_info("a", F, [3, 5]), tensor_info("bias", F, list(bias_shape))],
        [tensor_info("y", F, [3, 4])],
        [init("b", rand(5, 4))],
    )
    result, modified = apply(model, MatMulAddToGemmPass())
    assert modified and ops(cleaned(result)) == {"Gemm": 1}
    assert_same_outputs(model, result, {"a": rand(3, 5), "bias": rand(*bias_shape, seed=9)})


@pytest.mark.parametrize(("a_shape", "bias_shape"), [([2, 3, 5], [4]), ([3, 5], [2, 3, 4]), ([3, 5], [5, 1])])
def test_matmul_add_that_gemm_cannot_express_is_kept(a_shape: list[int], bias_shape: list[int]) -> None:
    model = make_model(
        [helper.make_node("MatMul", ["a", "b"], ["m"]), helper.make_node("Add", ["m", "bias"], ["y"])],
        [tensor_info("a", F, a_shape), tensor_info("bias", F, bias_shape)],
        [tensor_info("y", F, None)],
        [init("b", rand(5, 4))],
    )
    _, modified = apply(model, MatMulAddToGemmPass())
    assert not modified


@pytest.mark.parametrize(
    ("consumer", "attrs", "value"),
    [
        ("Conv", {"pads": [0, 1, 0, 1]}, 0.0),
        ("AveragePool", {"kernel_shape": [3, 3], "count_include_pad": 1}, 0.0),
        ("AveragePool", {"kernel_shape": [3, 3]}, 0.0),
        ("MaxPool", {"kernel_shape": [3, 3]}, -np.inf),
    ],
)
def test_pad_into_conv_and_pool(consumer: str, attrs: dict[str, object], value: float) -> None:
    inputs = ["p", "w"] if consumer == "Conv" else ["p"]
    model = make_model(
        [helper.make_node("Pad", ["x", "pads", "v"], ["p"]), helper.make_node(consumer, inputs, ["y"], **attrs)],
        [tensor_info("x", F, [1, 3, 6, 6])],
        [tensor_info("y", F, None)],
        [
            init("pads", np.array([0, 0, 1, 2, 0, 0, 1, 1], dtype=np.int64)),
            init("v", np.float32(value)),
            init("w", rand(2, 3, 1, 1)),
        ],
    )
    result, modified = apply(model, FusePadIntoConvPoolPass())
    assert modified and ops(cleaned(result)) == {consumer: 1}
    assert_same_outputs(model, result, {"x": rand(1, 3, 6, 6)})


def test_pad_with_nonzero_value_stays_before_conv() -> None:
    model = make_model(
        [helper.make_node("Pad", ["x", "pads", "v"], ["p"]), helper.make_node("Conv", ["p", "w"], ["y"])],
        [tensor_info("x", F, [1, 3, 6, 6])],
        [tensor_info("y", F, [1, 2, 8, 8])],
        [
            init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64)),
            init("v", np.float32(1.0)),
            init("w", rand(2, 3, 1, 1)),
        ],
    )
    _, modified = apply(model, FusePadIntoConvPoolPass())
    assert not modified


def test_fused_nodes_keep_the_names_of_what_they_absorbed() -> None:
    from onnxforge.passes._util import ABSORBED

    model = make_model(
        [
            helper.make_node("Pad", ["x", "pads"], ["p"], name="pad"),
            helper.make_node("Conv", ["p", "w"], ["c"], name="conv"),
            _bn("c", "y"),
        ],
        [tensor_info("x", F, [1, 3, 6, 6])],
        [tensor_info("y", F, None)],
        [
            init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64)),
            init("w", rand(2, 3, 3, 3)),
            *_bn_inits("bn_", 2),
        ],
    )
    model.graph.node[2].name = "bn"
    result, _ = apply(model, FusePadIntoConvPoolPass(), FuseConvBatchNormPass())
    (conv,) = list(cleaned(result).graph)
    assert conv.name == "conv" and conv.meta[ABSORBED] == ["pad", "bn"]


def test_conv_bn_then_mul_rescales_the_folded_weight_in_place() -> None:
    """The Mul after Conv+BN scales the array the BN fold made (no second copy); the numbers stay right."""
    model = make_model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            _bn("c", "b"),
            helper.make_node("Mul", ["b", "k"], ["y"]),
        ],
        [tensor_info("x", F, [1, 4, 6, 6])],
        [tensor_info("y", F, [1, 6, 6, 6])],
        [
            init("w", rand(6, 4, 3, 3, seed=7)),
            init("k", RNG.uniform(0.5, 2, (6, 1, 1)).astype(np.float32)),
            *_bn_inits("bn_", 6),
        ],
    )
    after_bn, _ = apply(model, FuseConvBatchNormPass())
    folded = next(node for node in after_bn.graph if node.op_type == "Conv").inputs[1]
    folded_array = folded.const_value.numpy()
    before = folded_array.copy()
    result, modified = apply(model, FuseConvBatchNormPass(), FuseConvAffinePass())
    assert modified and ops(cleaned(result)) == {"Conv": 1}
    assert_same_outputs(model, result, {"x": rand(1, 4, 6, 6)}, rtol=1e-4, atol=1e-4)
    # On the model of the first apply: the affine fold rewrites the BN fold's array itself.
    FuseConvAffinePass()(after_bn)
    conv = next(node for node in after_bn.graph if node.op_type == "Conv")
    assert conv.inputs[1].const_value.numpy() is folded_array
    assert not np.array_equal(folded_array, before)


def test_a_given_weight_is_never_rescaled_in_place() -> None:
    """Only arrays a fold made are written: a writable array the caller gave (add_initializer) stays as given."""
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Mul", ["c", "k"], ["y"])],
        [tensor_info("x", F, [2, 3, 5, 5])],
        [tensor_info("y", F, [2, 6, 3, 3])],
        [init("w", rand(6, 3, 3, 3, seed=4)), init("k", RNG.uniform(0.5, 2, (6, 1, 1)).astype(np.float32))],
    )
    ir_model, _ = apply(model)
    given = rand(6, 3, 3, 3, seed=5)
    ir_model.graph.initializers["w"].const_value = ir.Tensor(given)
    kept = given.copy()
    assert FuseConvAffinePass()(ir_model).modified
    np.testing.assert_array_equal(given, kept)
    conv = next(node for node in ir_model.graph if node.op_type == "Conv")
    assert conv.inputs[1].const_value.numpy() is not given
