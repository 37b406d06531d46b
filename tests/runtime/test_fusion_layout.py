"""Channels-last chains (runtime/fusion_layout.py): pointwise -> depthwise -> pointwise keeps its numbers."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxforge import InferenceSession, InvalidArgument, SessionOptions
from onnxforge.runtime.kernels import _conv_layout
from onnxforge.runtime.kernels._conv_layout import depthwise_nhwc, pointwise_from_nhwc, pointwise_to_nhwc
from onnxforge.runtime.kernels.conv import PackedWeight, _conv
from onnxforge.runtime.plan_builder import PlanBuilder

RNG = np.random.default_rng(11)


def _block(stride: int, pads: list[int], expose_middle: bool = False, stem: bool = False) -> onnx.ModelProto:
    """MobileNetV2's inverted residual without the residual: expand 1x1 + BN + ReLU6, 3x3 depthwise + ReLU6,
    project 1x1. ``stem``: the first conv is MobileNet's 3x3 stride-2 stem instead of the 1x1 expansion."""
    c, hidden, out = 8, 24, 12
    inits = {
        "w1": RNG.standard_normal((hidden, c, 3, 3) if stem else (hidden, c, 1, 1)).astype(np.float32),
        "s": RNG.uniform(0.5, 2, hidden).astype(np.float32),
        "t": RNG.standard_normal(hidden).astype(np.float32),
        "mu": RNG.standard_normal(hidden).astype(np.float32),
        "var": RNG.uniform(0.5, 2, hidden).astype(np.float32),
        "lo": np.array(0, np.float32),
        "hi": np.array(6, np.float32),
        "wd": RNG.standard_normal((hidden, 1, 3, 3)).astype(np.float32),
        "bd": RNG.standard_normal(hidden).astype(np.float32),
        "w2": RNG.standard_normal((out, hidden, 1, 1)).astype(np.float32),
        "b2": RNG.standard_normal(out).astype(np.float32),
    }
    nodes = [
        helper.make_node(
            "Conv", ["x", "w1"], ["e"], name="expand", **({"strides": [2, 2], "pads": [1, 0, 1, 1]} if stem else {})
        ),
        helper.make_node("BatchNormalization", ["e", "s", "t", "mu", "var"], ["n"], name="bn"),
        helper.make_node("Clip", ["n", "lo", "hi"], ["r"], name="relu6"),
        helper.make_node("Conv", ["r", "wd", "bd"], ["d"], name="dw", group=hidden, strides=[stride] * 2, pads=pads),
        helper.make_node("Clip", ["d", "lo", "hi"], ["dr"], name="relu6_dw"),
        helper.make_node("Conv", ["dr", "w2", "b2"], ["y"], name="project"),
    ]
    outputs = ["y", "r"] if expose_middle else ["y"]
    graph = helper.make_graph(
        nodes,
        "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _channels_last_steps(model: onnx.ModelProto) -> int:
    plan = PlanBuilder(ir.serde.deserialize_model(model).opset_imports, optimize=True).build(
        ir.serde.deserialize_model(model).graph
    )
    calls = [step[0] for step in plan.steps]  # (call, input slots, output slots, frees)
    return sum(
        1 for call in calls if getattr(getattr(call, "__code__", None), "co_filename", "").endswith("fusion_layout.py")
    )


@pytest.mark.parametrize(
    ("stride", "pads"), [(1, [1, 1, 1, 1]), (2, [1, 1, 1, 1]), (2, [0, 1, 2, 0]), (1, [0, 0, 0, 0])]
)
@pytest.mark.parametrize("threads", [1, 2])
def test_inverted_residual_runs_channels_last_with_the_reference_numbers(
    stride: int, pads: list[int], threads: int
) -> None:
    model = _block(stride, pads)
    x = RNG.standard_normal((2, 8, 45, 45)).astype(np.float32)
    options = SessionOptions()
    options.intra_op_num_threads = threads
    got = InferenceSession(model.SerializeToString(), options).run(None, {"x": x})[0]
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert _channels_last_steps(model) == 3


@pytest.mark.parametrize("threads", [1, 2])
def test_a_stem_conv_starts_the_chain_writing_channels_last(threads: int) -> None:
    model = _block(1, [1, 1, 1, 1], stem=True)
    x = RNG.standard_normal((2, 8, 47, 46)).astype(np.float32)
    options = SessionOptions()
    options.intra_op_num_threads = threads
    got = InferenceSession(model.SerializeToString(), options).run(None, {"x": x})[0]
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    assert got.shape == want.shape == (2, 12, 24, 23)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert _channels_last_steps(model) == 3


def test_a_middle_value_that_is_a_graph_output_keeps_the_chain_off() -> None:
    model = _block(1, [1, 1, 1, 1], expose_middle=True)
    x = RNG.standard_normal((1, 8, 10, 10)).astype(np.float32)
    got = InferenceSession(model.SerializeToString()).run(None, {"x": x})
    want = ReferenceEvaluator(model).run(None, {"x": x})
    for ours, theirs in zip(got, want):
        assert ours.shape == theirs.shape  # "r" is returned NCHW, as declared
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    assert _channels_last_steps(model) == 0


@pytest.mark.parametrize(
    ("kernel", "stride", "pads"),
    [(3, 1, (1, 1, 1, 1)), (3, 2, (0, 1, 2, 1)), (5, 3, (2, 0, 1, 2)), (3, 1, (0, 0, 0, 0))],
)
def test_depthwise_nhwc_matches_the_nchw_kernel(kernel: int, stride: int, pads: tuple[int, ...]) -> None:
    c = 6
    w = RNG.standard_normal((c, 1, kernel, kernel)).astype(np.float32)
    b = RNG.standard_normal(c).astype(np.float32)
    x = RNG.standard_normal((2, c, 11, 9)).astype(np.float32)
    conv = depthwise_nhwc(w, b, (stride, stride), pads[:2], pads[2:], None)
    got = conv(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    want = _conv(x, PackedWeight(w, c), b, "NOTSET", list(pads), [stride, stride], None)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_depthwise_nhwc_names_a_wrong_channel_count() -> None:
    conv = depthwise_nhwc(np.ones((4, 1, 3, 3), np.float32), None, (1, 1), (1, 1), (1, 1), None)
    with pytest.raises(InvalidArgument, match=r"4 channels, got shape \[1, 5, 5, 3\]"):
        conv(np.ones((1, 5, 5, 3), np.float32))


def test_pixel_bands_give_every_thread_an_equal_share() -> None:
    bands = _conv_layout._pixel_bands
    assert bands(1, 49, 68, 1) == [(0, 0, 49)]  # one thread: bands as big as the budget allows
    assert bands(1, 49, 68, 2) == [(0, 0, 25), (0, 25, 49)]  # 7x7 was one band: one thread did it all
    assert bands(1, 784, 341, 2) == [(0, i, i + 196) for i in range(0, 784, 196)]  # not 341 + 341 + 102
    assert bands(4, 49, 68, 2) == [(i, 0, 49) for i in range(4)]  # whole images when there are enough
    assert bands(1, 20, 64, 2) == [(0, 0, 10), (0, 10, 20)]
    assert bands(1, 20, 64, 4) == [(0, 0, 10), (0, 10, 20)]  # at most one band per 16 pixels


@pytest.mark.parametrize("to_nhwc", [True, False])
def test_pointwise_layout_convs_on_few_pixels_use_both_threads(to_nhwc: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    m, c = 192, 160
    w = RNG.standard_normal((m, c, 1, 1)).astype(np.float32)
    b = RNG.standard_normal(m).astype(np.float32)
    x = RNG.standard_normal((1, c, 7, 7)).astype(np.float32)
    want = np.einsum("mc,nchw->nmhw", w[:, :, 0, 0], x) + b[:, None, None]
    split_into: list[int] = []
    real = _conv_layout.parallel

    def spy(tasks: list) -> None:
        split_into.append(len(tasks))
        real(tasks)

    monkeypatch.setattr(_conv_layout, "parallel", spy)
    monkeypatch.setattr(_conv_layout, "workers", lambda: 2)
    monkeypatch.setattr(_conv_layout, "_PARALLEL_MIN_MACS", 0)  # 1.5M multiply-adds: worth a split on its own
    if to_nhwc:
        got = pointwise_to_nhwc(w, b, None)(x).transpose(0, 3, 1, 2)
    else:
        got = pointwise_from_nhwc(w, b, None)(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert split_into == [2]


@pytest.mark.parametrize("to_nhwc", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("with_relu", [True, False])
def test_pointwise_layout_convs_add_bias_before_the_activation(to_nhwc: bool, with_bias: bool, with_relu: bool) -> None:
    # The bias rides in the GEMM (to NHWC) or in the transposing copy (from NHWC, no activation): either way it
    # must land before the activation, in every band, for several images.
    m, c = 20, 7
    w = RNG.standard_normal((m, c, 1, 1)).astype(np.float32)
    b = RNG.standard_normal(m).astype(np.float32) if with_bias else None
    x = RNG.standard_normal((3, c, 33, 35)).astype(np.float32)
    want = np.einsum("mc,nchw->nmhw", w[:, :, 0, 0], x) + (0 if b is None else b[:, None, None])
    if with_relu:
        want = np.maximum(want, 0)
    activation = (lambda y: np.maximum(y, 0, out=y)) if with_relu else None
    if to_nhwc:
        got = pointwise_to_nhwc(w, b, activation)(x).transpose(0, 3, 1, 2)
    else:
        got = pointwise_from_nhwc(w, b, activation)(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    assert got.shape == (3, m, 33, 35) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_nhwc_adds_its_bias_to_every_row_before_the_activation(stride: int) -> None:
    c = 5
    w = RNG.standard_normal((c, 1, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(c).astype(np.float32)
    x = RNG.standard_normal((2, c, 13, 10)).astype(np.float32)
    conv = depthwise_nhwc(w, b, (stride, stride), (1, 1), (1, 1), lambda y: np.minimum(y, 0.5, out=y))
    got = conv(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    want = np.minimum(_conv(x, PackedWeight(w, c), b, "NOTSET", [1, 1, 1, 1], [stride, stride], None), 0.5)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transposed_weights_equal_the_cast_transpose_and_bias_row(dtype: type) -> None:
    w = RNG.standard_normal((7, 5)).astype(dtype)
    b = RNG.standard_normal(7).astype(dtype)
    plain = _conv_layout._transposed(w)
    with_row = _conv_layout._transposed(w, extra_row=b)
    assert plain.dtype == with_row.dtype == np.float32
    assert plain.flags.c_contiguous and with_row.flags.c_contiguous
    np.testing.assert_array_equal(plain, np.ascontiguousarray(w.T.astype(np.float32)))
    np.testing.assert_array_equal(with_row, np.concatenate([w.T, b[None, :]]).astype(np.float32))


@pytest.mark.parametrize(
    ("kernel", "stride", "pads", "width"),
    [
        (3, 1, (1, 1, 1, 1), 30),
        (3, 2, (1, 1, 1, 1), 33),
        (3, 2, (0, 1, 2, 0), 28),
        (5, 2, (2, 2, 2, 2), 31),
        (3, 1, (0, 0, 0, 0), 29),
        (3, 2, (1, 1, 1, 1), 13),
    ],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_pointwise_to_padded_feeds_the_depthwise_conv_the_numbers_of_the_unpadded_chain(
    kernel: int, stride: int, pads: tuple[int, ...], width: int, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    m, c = 18, 5
    wp = RNG.standard_normal((m, c, 1, 1)).astype(np.float32)
    bp = RNG.standard_normal(m).astype(np.float32)
    wd = RNG.standard_normal((m, 1, kernel, kernel)).astype(np.float32)
    bd = RNG.standard_normal(m).astype(np.float32)
    x = RNG.standard_normal((2, c, 23, width)).astype(np.float32)
    relu6 = lambda y: np.clip(y, 0, 6, out=y)  # noqa: E731
    monkeypatch.setattr(_conv_layout, "workers", lambda: threads)
    monkeypatch.setattr(_conv_layout, "_PARALLEL_MIN_MACS", 0)
    begins, ends = pads[:2], pads[2:]
    padded = _conv_layout.pointwise_to_padded(wp, bp, relu6, begins, ends, stride)(x)
    if width >= _conv_layout._PADDED_MIN_WIDTH:
        wq = -(-(width + begins[1] + ends[1]) // stride)
        assert padded.shape == (2, 23 + begins[0] + ends[0], stride, wq, m)
    else:
        assert padded.shape == (2, 23, width, m)  # narrow: plain NHWC, the depthwise conv pads it itself
    got = depthwise_nhwc(wd, bd, (stride, stride), begins, ends, relu6, prepadded=True)(padded)
    plain = pointwise_to_nhwc(wp, bp, relu6)(x)
    want = depthwise_nhwc(wd, bd, (stride, stride), begins, ends, relu6)(plain)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_prepadded_depthwise_conv_names_a_wrong_input_and_refuses_an_ambiguous_width() -> None:
    conv = depthwise_nhwc(np.ones((4, 1, 3, 3), np.float32), None, (2, 2), (1, 1), (1, 1), None, prepadded=True)
    with pytest.raises(
        InvalidArgument, match=r"expected a padded input \(N, Hp, 2, Wq, 4\), got shape \[1, 5, 1, 5, 4\]"
    ):
        conv(np.ones((1, 5, 1, 5, 4), np.float32))
    with pytest.raises(ValueError, match="kw % sw == 1"):
        depthwise_nhwc(np.ones((4, 1, 4, 4), np.float32), None, (2, 2), (1, 1), (1, 1), None, prepadded=True)
