"""Checking a simplified model against its original with the onnxforge engine.

Inputs: ``check_n`` random feeds plus any the caller gives. Each graph input that is not an initializer
gets an array of its declared element type and shape; a symbolic dim takes one value per name in a feed
(2, then 1, then 3, ...), so feeds with different sizes catch a pass that baked one size in. Floats are
standard normal, integers uniform in [0, 3) (small, as indices often are), bools fair coins. When the
original model rejects a feed, the feed is retried with every symbolic dim 1; a random set it still rejects
is skipped (inputs that are sizes, scales or indices rarely take random values). The caller's own input
sets must run. With no set left, nothing can be verified.

Tolerance: float outputs match when ``|s - o| <= ATOL * max(1, max|o|) + RTOL * |o|`` elementwise, with
NaN where the original has NaN; any other type must be equal. Outputs of a model with random ops are
compared by shape and type only when the original itself disagrees with itself on the same feed.

Both models run with ``ORT_DISABLE_ALL``, so the session's own optimizer (these same passes) never sits
between the two sides of the comparison. And both run with their main-graph initializers turned into
inputs with defaults, so the engine plans their weights alike on both sides: otherwise a weight that is
a constant on one side only (folded from ``ConstantOfShape``, as in ``light_squeezenet``) can take the
weight-packed Conv path there (another summation order), and an ill-conditioned output, such as a
Softmax over logits near 7e9, moves by far more than any tolerance though the graph computes the same.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from onnxforge.ir.dtypes import np_dtype_for
from onnxforge.runtime.options import GraphOptimizationLevel, SessionOptions
from onnxforge.runtime.session import InferenceSession

RTOL = 1e-3
ATOL = 1e-4
TOLERANCE_TEXT = f"|simplified - original| <= {ATOL:g} * max(1, max|original|) + {RTOL:g} * |original|"
SYMBOL_VALUES = (2, 1, 3)
RANDOM_OPS = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
)
# Above this many tensor bytes a model goes to the engine through a file with external data (protobuf's 2 GB cap).
_IN_MEMORY_LIMIT = 1_500_000_000

Feed = dict[str, np.ndarray]


class CannotVerify(Exception):
    """The original model cannot be run on the check inputs, so nothing can be compared."""


def session_options() -> SessionOptions:
    options = SessionOptions()
    options.graph_optimization_level = GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


def tensor_bytes(model: ir.Model) -> int:
    total = 0
    for graph in [model.graph, *model.graph.subgraphs()]:
        for value in graph.initializers.values():
            if value.const_value is not None:
                total += value.const_value.nbytes
    return total


def has_external_tensors(model: ir.Model) -> bool:
    """Whether serializing would write references to files a session could not find from a bare proto."""
    return any(
        isinstance(value.const_value, ir.ExternalTensor)
        for graph in [model.graph, *model.graph.subgraphs()]
        for value in graph.initializers.values()
    )


def _with_initializers_as_inputs(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Main graph only: a subgraph's inputs are its signature (an If branch has none)."""
    listed = {value.name for value in proto.graph.input}
    for tensor in proto.graph.initializer:
        if tensor.name not in listed:
            proto.graph.input.append(
                onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
            )
    return proto


class _ModelRunner:
    """An InferenceSession over an onnx-ir model whose initializers are made inputs with defaults, through a
    temporary file when it is too big for protobuf."""

    def __init__(self, model: ir.Model) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if tensor_bytes(model) > _IN_MEMORY_LIMIT or has_external_tensors(model):
            self._tmp = tempfile.TemporaryDirectory(prefix="onnxforge-verify-")
            path = os.path.join(self._tmp.name, "model.onnx")
            ir.save(model, path, external_data="model.onnx.data")
            onnx.save(_with_initializers_as_inputs(onnx.load(path, load_external_data=False)), path)
            self.session = InferenceSession(path, session_options())
        else:
            self.session = InferenceSession(
                _with_initializers_as_inputs(ir.serde.serialize_model(model)), session_options()
            )

    def run(self, feed: Feed) -> list[Any]:
        accepted = {arg.name for arg in self.session.get_inputs()} | {
            arg.name for arg in self.session.get_overridable_initializers()
        }
        return self.session.run(None, {k: v for k, v in feed.items() if k in accepted})

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def _input_specs(model: ir.Model) -> list[tuple[str, np.dtype, list[int | str | None]]]:
    specs = []
    for value in model.graph.inputs:
        if value.const_value is not None:
            continue  # an overridable initializer: its default is fed by the engine
        if not isinstance(value.type, ir.TensorType) or value.dtype is None or value.shape is None:
            raise CannotVerify(f"input '{value.name}' has no tensor type and shape to draw random values for")
        dims = [d if isinstance(d, int) else (d.value if d.value else None) for d in value.shape]
        specs.append((value.name or "", np_dtype_for(value.dtype), dims))
    return specs


def random_feed(
    specs: Sequence[tuple[str, np.dtype, list[int | str | None]]], rng: np.random.Generator, symbol: int
) -> Feed:
    feed: Feed = {}
    for name, dtype, dims in specs:
        shape = tuple(d if isinstance(d, int) else symbol for d in dims)
        if dtype.kind == "f" or dtype.kind == "V":  # "V": ml_dtypes float types
            array = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            array = rng.integers(0, 3, size=shape).astype(dtype)
        elif dtype.kind == "b":
            array = rng.integers(0, 2, size=shape).astype(bool)
        elif dtype.kind == "c":
            array = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
        elif dtype.kind == "O":
            array = np.full(shape, "a", dtype=object)
        else:
            array = rng.standard_normal(shape).astype(dtype)
        feed[name] = array
    return feed


def compare_outputs(
    names: Sequence[str], original: Sequence[Any], simplified: Sequence[Any], loose: set[int]
) -> str | None:
    """None when the outputs match (see the module docstring), else what differs."""
    if len(original) != len(simplified):
        return f"{len(simplified)} outputs instead of {len(original)}"
    for index, (name, want, got) in enumerate(zip(names, original, simplified)):
        if not isinstance(want, np.ndarray) or not isinstance(got, np.ndarray):
            if type(want) is not type(got):
                return f"output '{name}': {type(got).__name__} instead of {type(want).__name__}"
            continue
        if want.shape != got.shape or want.dtype != got.dtype:
            return f"output '{name}': {got.dtype}{list(got.shape)} instead of {want.dtype}{list(want.shape)}"
        if index in loose:
            continue
        if want.dtype.kind in "fc":
            w, g = (
                want.astype(np.complex128 if want.dtype.kind == "c" else np.float64),
                got.astype(np.complex128 if want.dtype.kind == "c" else np.float64),
            )
            finite = np.isfinite(w)
            scale = max(1.0, float(np.max(np.abs(w[finite]))) if finite.any() else 1.0)
            with np.errstate(invalid="ignore"):
                close = np.abs(g - w) <= ATOL * scale + RTOL * np.abs(w)
            close |= (np.isnan(w) & np.isnan(g)) | (w == g)
            if not close.all():
                diff = np.abs(g - w)[~close]
                return f"output '{name}': {int((~close).sum())} of {w.size} values differ (max |diff| {float(np.nanmax(diff)) if diff.size else float('nan'):.3g})"
        elif not np.array_equal(want, got):
            return f"output '{name}': values differ"
    return None


def _is_random(node: ir.Node) -> bool:
    # Dropout draws only in training mode, which takes a training_mode input (opset 12 on).
    return node.op_type in RANDOM_OPS or (
        node.op_type == "Dropout" and len(node.inputs) > 2 and node.inputs[2] is not None
    )


def _as_feed(value: Any) -> Any:
    """Arrays as arrays; sequences (lists), maps and optionals (None) go to the session as given."""
    return value if value is None or isinstance(value, (list, tuple, dict)) else np.asarray(value)


class Verifier:
    """Runs the original once per feed, then compares any candidate against the recorded outputs."""

    def __init__(self, model: ir.Model, check_n: int, inputs: Sequence[Mapping[str, Any]] = (), seed: int = 0) -> None:
        try:
            self.runner = _ModelRunner(model)
        except Exception as exc:
            raise CannotVerify(f"the original model does not load in onnxforge: {type(exc).__name__}: {exc}") from exc
        self.session = self.runner.session
        self.output_names = [arg.name for arg in self.session.get_outputs()]
        self._last_error = ""
        try:
            self._record_cases(model, check_n, inputs, seed)
        except CannotVerify:
            self.runner.close()
            raise

    def _record_cases(self, model: ir.Model, check_n: int, inputs: Sequence[Mapping[str, Any]], seed: int) -> None:
        rng = np.random.default_rng(seed)
        given = [{k: _as_feed(v) for k, v in feed.items()} for feed in inputs]
        nondeterministic = any(_is_random(node) for node in ir.traversal.RecursiveGraphIterator(model.graph))
        self.cases: list[tuple[Feed, list[Any], set[int]]] = [self._case(feed, nondeterministic) for feed in given]
        skipped = ""
        try:
            specs = _input_specs(model) if check_n > 0 else []
        except CannotVerify as exc:
            if not given:
                raise
            specs, check_n, skipped = [], 0, f"; no random inputs: {exc}"
        rejected = 0
        for trial in range(check_n):
            case = self._random_case(specs, rng, SYMBOL_VALUES[trial % len(SYMBOL_VALUES)], nondeterministic)
            if case is None:
                rejected += 1
            else:
                self.cases.append(case)
        if not self.cases:
            raise CannotVerify(f"the original model fails on every random input set ({self._last_error})")
        if rejected:
            skipped += f"; {rejected} random set(s) the original model rejects were skipped ({self._last_error})"
        self.description = f"{len(self.cases)} input set(s) ({len(given)} given, {check_n - rejected} random); {TOLERANCE_TEXT}{skipped}"

    def _random_case(
        self,
        specs: list[tuple[str, np.dtype, list[int | str | None]]],
        rng: np.random.Generator,
        symbol: int,
        nondeterministic: bool,
    ) -> tuple[Feed, list[Any], set[int]] | None:
        """A random case, retried with every symbolic dim 1; None when the original rejects both."""
        for value in (symbol, 1):
            try:
                return self._case(random_feed(specs, rng, value), nondeterministic)
            except CannotVerify as exc:
                self._last_error = str(exc)
        return None

    def _case(self, feed: Feed, nondeterministic: bool) -> tuple[Feed, list[Any], set[int]]:
        try:
            outputs = self.runner.run(feed)
            loose: set[int] = set()
            if nondeterministic:
                again = self.runner.run(feed)
                loose = {
                    i
                    for i in range(len(outputs))
                    if compare_outputs(self.output_names, [outputs[i]], [again[i]], set())
                }
        except Exception as exc:
            raise CannotVerify(f"the original model fails on the check inputs: {type(exc).__name__}: {exc}") from exc
        return feed, outputs, loose

    def close(self) -> None:
        self.runner.close()

    def check(self, model: ir.Model) -> str | None:
        """None when ``model`` matches the original on every case, else the first difference."""
        try:
            runner = _ModelRunner(model)
        except Exception as exc:
            return f"the simplified model does not load: {type(exc).__name__}: {exc}"
        try:
            names = [arg.name for arg in runner.session.get_outputs()]
            if names != self.output_names:
                return f"outputs are {names} instead of {self.output_names}"
            for feed, expected, loose in self.cases:
                try:
                    got = runner.run(feed)
                except Exception as exc:
                    return f"the simplified model fails: {type(exc).__name__}: {exc}"
                problem = compare_outputs(self.output_names, expected, got, loose)
                if problem is not None:
                    return problem
            return None
        finally:
            runner.close()
