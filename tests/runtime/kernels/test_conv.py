"""Conv and ConvTranspose against onnx's reference evaluator and onnxruntime on generated geometries.

Shapes, strides, pads, dilations, groups (including depthwise with a channel multiplier), auto_pad and
kernel sizes are drawn by hypothesis; weights are either initializers (the pre-packed ``prepare`` path)
or graph inputs (the plain kernel). The reference's ConvTranspose mishandles groups, so those cases are
checked against onnxruntime. The helpers here are shared by the other kernel-family tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxforge import InferenceSession, InvalidArgument, SessionOptions
from onnxforge.runtime.kernels import _conv_dense as dense_module
from onnxforge.runtime.kernels import _depthwise as depthwise_module
from onnxforge.runtime.kernels import _im2col as im2col_module
from onnxforge.runtime.kernels import conv as conv_module

try:
    import onnxruntime as _ort

    # A test elsewhere may install onnxforge's onnxruntime shim; comparing against ourselves proves nothing.
    ORT: Any = _ort if _ort.__name__ == "onnxruntime" else None
except ImportError:  # pragma: no cover - onnxruntime is a dev dependency
    ORT = None

needs_ort = pytest.mark.skipif(ORT is None, reason="needs the real onnxruntime")
seeds = st.integers(0, 2**32 - 1)
TOLERANCE = {np.float16: 1e-2, np.float32: 1e-4, np.float64: 1e-10}


def node_model(
    op: str,
    inputs: list[tuple[str, np.ndarray | None, bool]],
    outputs: int | list[str] = 1,
    opset: int = 22,
    output_dtypes: list[Any] | None = None,
    **attrs: Any,
) -> onnx.ModelProto:
    """A one-node model; inputs are (name, value, is_initializer), a None value is an omitted input.

    Graph inputs and outputs carry element types (outputs default to the first input's) but no shapes, so
    the kernels' own checks are what runs.
    """
    names = [name if value is not None else "" for name, value, _ in inputs]
    while names and not names[-1]:
        names.pop()
    out_names = [f"out{i}" for i in range(outputs)] if isinstance(outputs, int) else outputs
    node = helper.make_node(op, names, out_names, **attrs)
    graph_inputs, initializers = [], []
    for name, value, constant in inputs:
        if value is None:
            continue
        if constant:
            initializers.append(numpy_helper.from_array(value, name))
        else:
            graph_inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), None))
    first = next(value for _, value, _ in inputs if value is not None)
    types = output_dtypes or [first.dtype] * len(out_names)
    graph_outputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(t)), None)
        for name, t in zip(out_names, types)
    ]
    graph = helper.make_graph([node], f"{op.lower()}_test", graph_inputs, graph_outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10 if opset >= 21 else 8
    return model


def feeds_of(inputs: list[tuple[str, np.ndarray | None, bool]]) -> dict[str, np.ndarray]:
    return {name: value for name, value, constant in inputs if value is not None and not constant}


def run_ours(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[Any]:
    return InferenceSession(model.SerializeToString()).run(None, feeds)


def run_reference(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[Any]:
    return list(ReferenceEvaluator(model).run(None, feeds))


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[Any]:
    options = ORT.SessionOptions()
    options.graph_optimization_level = ORT.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ORT.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)


def assert_matches(got: np.ndarray, want: np.ndarray, dtype: Any, tolerance: float | None = None) -> None:
    """Same dtype (the declared one) and shape, values within a dtype-scaled tolerance."""
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.dtype(dtype), f"dtype {got.dtype}, expected {np.dtype(dtype)}"
    assert got.shape == np.shape(want), f"shape {got.shape}, expected {np.shape(want)}"
    tol = TOLERANCE.get(np.dtype(dtype).type, 1e-4) if tolerance is None else tolerance
    scale = max(1.0, float(np.max(np.abs(np.asarray(want, dtype=np.float64))))) if np.size(want) else 1.0
    np.testing.assert_allclose(got.astype(np.float64), np.asarray(want, dtype=np.float64), rtol=tol, atol=tol * scale)


def random(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
    return rng.uniform(-1, 1, size=shape).astype(dtype)


@st.composite
def conv_cases(draw: st.DrawFn) -> dict[str, Any]:
    rank = draw(st.integers(1, 3))
    limit = 3 if rank < 3 else 2
    depthwise = draw(st.booleans())
    if depthwise:
        group, cg = draw(st.integers(2, 4)), 1
    else:
        group, cg = draw(st.sampled_from([1, 1, 2, 3])), draw(st.integers(1, 3))
    kernel = [draw(st.integers(1, limit)) for _ in range(rank)]
    strides = [draw(st.integers(1, 3)) for _ in range(rank)]
    dilations = [draw(st.integers(1, 2)) for _ in range(rank)]
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    pads = [draw(st.integers(0, 2)) for _ in range(2 * rank)] if auto_pad == "NOTSET" else [0] * 2 * rank
    spatial = []
    for i in range(rank):
        span = dilations[i] * (kernel[i] - 1) + 1
        low = max(1, span - pads[i] - pads[i + rank]) if auto_pad in ("NOTSET", "VALID") else 1
        spatial.append(draw(st.integers(low, low + (6 if rank < 3 else 3))))
    return {
        "batch": draw(st.integers(1, 2)),
        "group": group,
        "cg": cg,
        "mg": draw(st.integers(1, 3)),
        "kernel": kernel,
        "strides": strides,
        "dilations": dilations,
        "auto_pad": auto_pad,
        "pads": pads,
        "spatial": spatial,
        "dtype": draw(st.sampled_from([np.float32, np.float32, np.float64, np.float16])),
        "constant_weight": draw(st.booleans()),
        "bias": draw(st.booleans()),
        "explicit_kernel_shape": draw(st.booleans()),
        "seed": draw(seeds),
    }


def conv_attributes(case: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {"strides": case["strides"], "dilations": case["dilations"], "group": case["group"]}
    if case["auto_pad"] == "NOTSET":
        attrs["pads"] = case["pads"]
    else:
        attrs["auto_pad"] = case["auto_pad"]
    if case["explicit_kernel_shape"]:
        attrs["kernel_shape"] = case["kernel"]
    return attrs


@settings(max_examples=30, deadline=None)
@given(conv_cases())
def test_conv_matches_reference(case: dict[str, Any]) -> None:
    rng = np.random.default_rng(case["seed"])
    dtype, group = case["dtype"], case["group"]
    x = random(rng, (case["batch"], group * case["cg"], *case["spatial"]), dtype)
    w = random(rng, (group * case["mg"], case["cg"], *case["kernel"]), dtype)
    b = random(rng, (group * case["mg"],), dtype) if case["bias"] else None
    inputs = [("X", x, False), ("W", w, case["constant_weight"]), ("B", b, case["constant_weight"])]
    model = node_model("Conv", inputs, **conv_attributes(case))
    # The reference runs in float32 for float16 inputs, so the check measures our rounding, not its.
    wide = [
        (name, None if v is None else v.astype(np.float32) if dtype == np.float16 else v, c) for name, v, c in inputs
    ]
    expected = run_reference(node_model("Conv", wide, **conv_attributes(case)), feeds_of(wide))[0]
    (got,) = run_ours(model, feeds_of(inputs))
    assert_matches(got, expected, dtype)


@pytest.mark.parametrize(
    ("kernel", "strides", "dilations", "pads"),
    [
        ((3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
        ((3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),
        ((3, 4), (2, 3), (1, 1), (2, 0, 1, 3)),
        ((3, 3), (2, 2), (2, 2), (0, 0, 0, 0)),
        ((3, 5), (1, 3), (2, 3), (1, 2, 0, 1)),
        ((5, 5), (3, 2), (1, 2), (2, 2, 2, 2)),
    ],
)
@pytest.mark.parametrize("batch", [1, 2])
def test_depthwise_channels_last_path_matches_reference(
    kernel: tuple[int, int], strides: tuple[int, int], dilations: tuple[int, int], pads: tuple[int, ...], batch: int
) -> None:
    """2-D float32 depthwise convs run channels-last with column phases (see ``_depthwise.py``)."""
    rng = np.random.default_rng(7)
    x = random(rng, (batch, 6, 11, 13))
    w = random(rng, (6, 1, *kernel))
    inputs = [("X", x, False), ("W", w, True)]
    attrs = {"group": 6, "strides": list(strides), "dilations": list(dilations), "pads": list(pads)}
    model = node_model("Conv", inputs, **attrs)
    (got,) = run_ours(model, feeds_of(inputs))
    assert_matches(got, run_reference(model, feeds_of(inputs))[0], np.float32)


@st.composite
def conv_transpose_cases(draw: st.DrawFn) -> dict[str, Any]:
    rank = draw(st.integers(1, 3))
    limit = 3 if rank < 3 else 2
    kernel = [draw(st.integers(1, limit)) for _ in range(rank)]
    strides = [draw(st.integers(1, 3)) for _ in range(rank)]
    dilations = [draw(st.integers(1, 2)) for _ in range(rank)]
    mode = draw(st.sampled_from(["pads", "pads", "output_shape", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    spatial = [draw(st.integers(1, 5 if rank < 3 else 3)) for _ in range(rank)]
    output_padding = [draw(st.integers(0, s - 1)) for s in strides]
    full = [
        s * (n - 1) + op + d * (k - 1) + 1
        for s, n, op, d, k in zip(strides, spatial, output_padding, dilations, kernel)
    ]
    pads = [0] * (2 * rank)
    if mode == "pads":
        for i in range(rank):
            pads[i] = draw(st.integers(0, min(2, (full[i] - 1) // 2)))
            pads[i + rank] = draw(st.integers(0, min(2, full[i] - 1 - pads[i])))
    output_shape = [draw(st.integers(max(1, f - 2), f)) for f in full] if mode == "output_shape" else None
    return {
        "batch": draw(st.integers(1, 2)),
        "group": draw(st.sampled_from([1, 1, 2, 3])),
        "cg": draw(st.integers(1, 3)),
        "mg": draw(st.integers(1, 3)),
        "kernel": kernel,
        "strides": strides,
        "dilations": dilations,
        "mode": mode,
        "pads": pads,
        "output_padding": output_padding if mode != "output_shape" else [0] * rank,
        "output_shape": output_shape,
        "spatial": spatial,
        "dtype": draw(st.sampled_from([np.float32, np.float64])),
        "constant_weight": draw(st.booleans()),
        "bias": draw(st.booleans()),
        "seed": draw(seeds),
    }


def conv_transpose_model(
    case: dict[str, Any], rng: np.random.Generator
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    dtype, group = case["dtype"], case["group"]
    x = random(rng, (case["batch"], group * case["cg"], *case["spatial"]), dtype)
    w = random(rng, (group * case["cg"], case["mg"], *case["kernel"]), dtype)
    b = random(rng, (group * case["mg"],), dtype) if case["bias"] else None
    attrs: dict[str, Any] = {"strides": case["strides"], "dilations": case["dilations"], "group": group}
    if any(case["output_padding"]):
        attrs["output_padding"] = case["output_padding"]
    if case["mode"] == "pads":
        attrs["pads"] = case["pads"]
    elif case["mode"] == "output_shape":
        attrs["output_shape"] = case["output_shape"]
    else:
        attrs["auto_pad"] = case["mode"]
    inputs = [("X", x, False), ("W", w, case["constant_weight"]), ("B", b, case["constant_weight"])]
    return node_model("ConvTranspose", inputs, **attrs), feeds_of(inputs)


@needs_ort
@settings(max_examples=30, deadline=None)
@given(conv_transpose_cases())
def test_conv_transpose_matches_onnxruntime(case: dict[str, Any]) -> None:
    case = {**case, "dtype": np.float32}  # onnxruntime's CPU ConvTranspose is float32-only
    model, feeds = conv_transpose_model(case, np.random.default_rng(case["seed"]))
    (got,) = run_ours(model, feeds)
    assert_matches(got, run_ort(model, feeds)[0], case["dtype"])


@settings(max_examples=20, deadline=None)
@given(conv_transpose_cases())
def test_conv_transpose_matches_reference_without_groups(case: dict[str, Any]) -> None:
    case = {**case, "group": 1}
    if case["mode"] == "output_shape":
        case["mode"] = "pads"  # the reference cannot crop to an output_shape smaller than its full result
    spans = [d * (k - 1) + 1 + op for d, k, op in zip(case["dilations"], case["kernel"], case["output_padding"])]
    if case["mode"].startswith("SAME") and any(span < s for span, s in zip(spans, case["strides"])):
        # A negative SAME total pad: the reference pads to in * strides, onnxruntime (and we) do not.
        case["mode"] = "VALID"
    model, feeds = conv_transpose_model(case, np.random.default_rng(case["seed"]))
    (got,) = run_ours(model, feeds)
    assert_matches(got, run_reference(model, feeds)[0], case["dtype"])


@pytest.mark.parametrize("opset", [7, 11, 22])
def test_conv_paths_agree_across_opsets(opset: int) -> None:
    """1x1, depthwise (multiplier 2) and general convs give the same answers through both code paths."""
    rng = np.random.default_rng(0)
    x = random(rng, (2, 4, 7, 6))
    for w, group in ((random(rng, (6, 4, 1, 1)), 1), (random(rng, (8, 1, 3, 3)), 4), (random(rng, (6, 2, 3, 2)), 2)):
        attrs = {"group": group, "pads": [1, 0, 1, 1], "strides": [2, 1]}
        constant = run_ours(node_model("Conv", [("X", x, False), ("W", w, True)], opset=opset, **attrs), {"X": x})[0]
        plain = run_ours(
            node_model("Conv", [("X", x, False), ("W", w, False)], opset=opset, **attrs), {"X": x, "W": w}
        )[0]
        expected = run_reference(
            node_model("Conv", [("X", x, False), ("W", w, False)], opset=opset, **attrs), {"X": x, "W": w}
        )[0]
        assert_matches(constant, expected, np.float32)
        assert_matches(plain, expected, np.float32)


def test_conv_rejects_channel_mismatch() -> None:
    x = np.zeros((1, 3, 5, 5), np.float32)
    w = np.zeros((4, 2, 3, 3), np.float32)
    with pytest.raises(InvalidArgument, match="channels"):
        run_ours(node_model("Conv", [("X", x, False), ("W", w, True)]), {"X": x})


@pytest.mark.parametrize("bias", [False, True])
def test_conv_im2col_bands_agree(monkeypatch: pytest.MonkeyPatch, bias: bool) -> None:
    """With a tiny band budget every output row is its own im2col band; results must not change."""
    monkeypatch.setattr(im2col_module, "COLS_BYTES", 256)
    rng = np.random.default_rng(1)
    x, w, b = random(rng, (3, 4, 9, 7)), random(rng, (6, 2, 3, 2)), random(rng, (6,))
    attrs = {"pads": [1, 0, 1, 1], "group": 2, "strides": [1, 2]}
    inputs = [("X", x, False), ("W", w, True), ("B", b if bias else None, True)]
    expected = run_reference(node_model("Conv", inputs, **attrs), {"X": x})[0]
    assert_matches(run_ours(node_model("Conv", inputs, **attrs), {"X": x})[0], expected, np.float32)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "group", "strides"),
    [
        ((1, 32, 40, 40), (48, 32, 3, 3), 1, [1, 1]),  # im2col, one image: bands split across threads
        ((1, 32, 56, 56), (32, 32, 3, 3), 1, [1, 1]),  # im2col: two bands of 28 rows, not 32 + 24
        ((1, 96, 10, 10), (80, 96, 3, 3), 1, [1, 1]),  # im2col on few pixels: input channels split
        ((5, 16, 20, 20), (24, 16, 3, 3), 1, [1, 1]),  # flat im2col on a batch: column chunks split
        ((1, 64, 40, 40), (96, 64, 1, 1), 1, [1, 1]),  # pointwise: pixel columns split
        ((1, 512, 7, 7), (256, 512, 1, 1), 1, [1, 1]),  # pointwise on few pixels: output rows split
        ((1, 128, 13, 13), (300, 128, 1, 1), 1, [1, 1]),  # pointwise, more channels than pixels: rows split
        ((1, 60, 64, 64), (90, 20, 1, 1), 3, [1, 1]),  # grouped pointwise: groups split
        ((1, 128, 112, 112), (128, 1, 3, 3), 128, [2, 2]),  # depthwise: output rows split
        ((1, 128, 56, 56), (128, 1, 3, 3), 128, [1, 1]),  # depthwise, stride 1: output rows split
        ((1, 12, 30, 30, 30), (12, 1, 3, 3, 3), 12, [1, 1, 1]),  # 3-D depthwise: channels split
    ],
)
def test_conv_split_across_intra_op_threads_matches_one_thread(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], group: int, strides: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every conv strategy is big enough here to hand parts to the intra-op pool at 2 threads."""
    rng = np.random.default_rng(0)
    x = random(rng, x_shape)
    w = random(rng, w_shape)
    b = random(rng, (w_shape[0],))
    pad = (w_shape[2] - 1) // 2
    inputs = [("X", x, False), ("W", w, True), ("B", b, True)]
    model = node_model("Conv", inputs, opset=13, group=group, strides=strides, pads=[pad] * 2 * (len(x_shape) - 2))
    conv_macs = np.prod(w_shape) * np.prod(x_shape[2:]) // np.prod(strides) * x_shape[0]
    assert conv_macs >= (
        depthwise_module._PARALLEL_MIN_MACS if group == x_shape[1] else im2col_module.PARALLEL_MIN_MACS
    )
    split_into: list[int] = []
    real_parallel = conv_module.parallel

    def spy(tasks: Any) -> None:
        split_into.append(len(tasks))
        real_parallel(tasks)

    monkeypatch.setattr(conv_module, "parallel", spy)
    monkeypatch.setattr(depthwise_module, "parallel", spy)
    monkeypatch.setattr(im2col_module, "parallel", spy)
    results, parts = [], []
    for threads in (1, 2):
        options = SessionOptions()
        options.intra_op_num_threads = threads
        split_into.clear()
        results.append(InferenceSession(model.SerializeToString(), options).run(None, {"X": x})[0])
        parts.append(max(split_into, default=1))
    assert parts == [1, 2]
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-5)
    assert_matches(results[0], run_reference(model, {"X": x})[0], np.float32)


@pytest.mark.parametrize("kernel", [1, 3])
def test_identical_filters_give_bit_identical_channels(kernel: int) -> None:
    """Duplicate output channels are computed once: BLAS alone would round them differently by position."""
    rng = np.random.default_rng(3)
    base = random(rng, (3, 16, kernel, kernel))
    w = base[[0, 1, 0, 2, 0, 1] * 20]  # 120 channels, 3 distinct filters
    b = np.zeros(120, np.float32)
    x = (random(rng, (1, 16, 13, 13)) * 1e7).astype(np.float32)
    inputs = [("X", x, False), ("W", w, True), ("B", b, True)]
    model = node_model("Conv", inputs, opset=13, pads=[kernel // 2] * 4)
    y = run_ours(model, {"X": x})[0]
    assert y.shape == (1, 120, 13, 13)
    for channel in range(6, 120):
        np.testing.assert_array_equal(y[0, channel], y[0, channel % 6])
    assert_matches(y, run_reference(model, {"X": x})[0], np.float32)


def test_two_threads_cut_56_output_rows_into_equal_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    """The band budget alone gives bands of 32 and 24 rows here; at 2 threads they are 28 and 28."""
    rng = np.random.default_rng(4)
    x, w = random(rng, (1, 64, 56, 56)), random(rng, (64, 64, 3, 3))
    band_columns: list[int] = []
    real_scratch = im2col_module.scratch

    def spy(key: str, shape: tuple[int, ...], dtype: np.dtype, zero: bool = False) -> np.ndarray:
        if key == "cols":
            band_columns.append(shape[-1])
        return real_scratch(key, shape, dtype, zero)

    monkeypatch.setattr(im2col_module, "scratch", spy)
    model = node_model("Conv", [("X", x, False), ("W", w, True)], opset=13, pads=[1, 1, 1, 1])
    options = SessionOptions()
    options.intra_op_num_threads = 2
    got = InferenceSession(model.SerializeToString(), options).run(None, {"X": x})[0]
    assert sorted(band_columns) == [28 * 56, 28 * 56]
    assert_matches(got, run_reference(model, {"X": x})[0], np.float32)


@pytest.mark.parametrize("bias", [False, True])
def test_few_pixels_at_two_threads_split_the_input_channels(monkeypatch: pytest.MonkeyPatch, bias: bool) -> None:
    rng = np.random.default_rng(5)
    x, w, b = random(rng, (1, 160, 7, 7)), random(rng, (96, 160, 3, 3)), random(rng, (96,))
    calls: list[int] = []
    real_split = conv_module.im2col_split_channels

    def spy(*args: Any) -> np.ndarray:
        calls.append(args[-1])
        return real_split(*args)

    monkeypatch.setattr(conv_module, "im2col_split_channels", spy)
    model = node_model(
        "Conv", [("X", x, False), ("W", w, True), ("B", b if bias else None, True)], opset=13, pads=[1] * 4
    )
    results = []
    for threads in (1, 2):
        options = SessionOptions()
        options.intra_op_num_threads = threads
        results.append(InferenceSession(model.SerializeToString(), options).run(None, {"X": x})[0])
    assert calls == [2]  # only at 2 threads, in two parts
    np.testing.assert_allclose(results[1], results[0], rtol=1e-4, atol=1e-4)
    assert_matches(results[1], run_reference(model, {"X": x})[0], np.float32)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "attrs"),
    [
        ((1, 1, 8, 8), (16, 1, 3, 3), {"pads": [1, 1, 1, 1]}),  # the bundled digits model's first conv
        ((3, 16, 4, 4), (32, 16, 3, 3), {"pads": [1, 1, 1, 1]}),
        ((2, 3, 9, 7), (5, 3, 3, 2), {"pads": [1, 0, 2, 1], "strides": [2, 1], "dilations": [1, 2]}),
        ((1, 2, 5, 5, 5), (4, 2, 2, 2, 2), {}),  # 3-D
    ],
)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_small_conv_takes_im2col_small_with_the_numbers_of_the_banded_im2col(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    attrs: dict[str, Any],
    bias: bool,
    dtype: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(4)
    x, w, b = (rng.standard_normal(shape).astype(dtype) for shape in (x_shape, w_shape, w_shape[:1]))
    inputs = [("X", x, False), ("W", w, True), ("B", b if bias else None, True)]
    taken: list[tuple[int, ...]] = []
    real = conv_module.im2col_small

    def spy(xp: np.ndarray, *args: Any) -> np.ndarray:
        taken.append(xp.shape)
        return real(xp, *args)

    monkeypatch.setattr(conv_module, "im2col_small", spy)
    monkeypatch.setattr(conv_module, "pays", lambda *args: False)  # not the implicit GEMM
    monkeypatch.setattr(dense_module, "MAX_ENTRIES", 0)  # nor the dense product
    small = run_ours(node_model("Conv", inputs, **attrs), {"X": x})[0]
    assert taken, "the small path was not taken"
    monkeypatch.setattr(conv_module, "SMALL_COLS", 0)
    banded = run_ours(node_model("Conv", inputs, **attrs), {"X": x})[0]
    assert len(taken) == 1 and small.dtype == banded.dtype == dtype and small.shape == banded.shape
    np.testing.assert_allclose(small, banded, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-6)
    expected = run_reference(node_model("Conv", inputs, **attrs), {"X": x})[0]
    assert_matches(small, expected, dtype)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "attrs"),
    [
        ((3, 16, 4, 4), (32, 16, 3, 3), {"pads": [1, 1, 1, 1]}),  # the bundled digits model's second conv
        ((2, 4, 6, 5), (6, 2, 3, 2), {"pads": [1, 0, 2, 1], "strides": [2, 1], "dilations": [1, 2], "group": 2}),
        ((2, 6, 7, 7), (6, 1, 3, 3), {"pads": [1, 1, 1, 1], "group": 6}),  # depthwise (sparse: few images only)
        ((4, 3, 9), (5, 3, 4), {"strides": [2], "auto_pad": "SAME_UPPER"}),  # 1-D
        ((1, 2, 3, 4, 4), (4, 2, 2, 2, 2), {}),  # 3-D
    ],
)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_conv_on_small_images_runs_as_one_dense_product_with_the_reference_numbers(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    attrs: dict[str, Any],
    bias: bool,
    dtype: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(6)
    x, w, b = (rng.standard_normal(shape).astype(dtype) for shape in (x_shape, w_shape, w_shape[:1]))
    calls: list[tuple[int, ...]] = []
    real = dense_module.DenseConv.__call__

    def spy(self: Any, images: np.ndarray) -> np.ndarray:
        calls.append(images.shape)
        return real(self, images)

    monkeypatch.setattr(dense_module.DenseConv, "__call__", spy)
    model = node_model("Conv", [("X", x, False), ("W", w, True), ("B", b if bias else None, True)], **attrs)
    got = run_ours(model, {"X": x})[0]
    assert calls == [x_shape], "the dense product was not used"
    expected = run_reference(model, {"X": x})[0]
    assert got.shape == expected.shape and got.dtype == dtype
    assert_matches(got, expected, dtype)


def test_the_dense_product_pays_by_size_and_batch_and_leaves_a_bias_given_at_run_time_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    f32 = np.dtype(np.float32)
    assert dense_module.dense_conv((64, 32, 32), 64, 1, (32, 32), f32, None, lambda b: b) is None  # T too big
    sparse = dense_module.DenseConv(np.zeros((64, 1024), np.float32), None, (16, 8, 8), 7.1)
    assert sparse.pays(1) and sparse.pays(4) and not sparse.pays(5) and not sparse.pays(360)
    assert dense_module.DenseConv(np.zeros((256, 512), np.float32), None, (32, 4, 4), 1.8).pays(360)
    calls: list[int] = []
    real = dense_module.DenseConv.__call__
    monkeypatch.setattr(dense_module.DenseConv, "__call__", lambda self, x: calls.append(1) or real(self, x))
    rng = np.random.default_rng(7)
    x, w, bias = random(rng, (2, 3, 6, 6)), random(rng, (4, 3, 3, 3)), random(rng, (4,))
    model = node_model("Conv", [("X", x, False), ("W", w, True), ("B", bias, False)], pads=[1, 1, 1, 1])
    assert_matches(run_ours(model, {"X": x, "B": bias})[0], run_reference(model, {"X": x, "B": bias})[0], np.float32)
    assert not calls  # the bias is an input here: the window paths add it
