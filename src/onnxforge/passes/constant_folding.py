"""Constant folding: a node whose inputs are all constants is replaced by initializers holding its outputs.

Rule: ``y = op(c1, ..., cn)`` with every ``ci`` constant (see ``_util``) becomes the initializer ``y`` with
the value onnxforge's own kernel computes (``_evaluate``), so the folded model gives what the engine would
have given at run time. Not folded:

- nodes with subgraphs (``If`` with a constant condition has its own pass) or function-attribute refs;
- random ops (``RandomNormal``, ``Bernoulli``, ...) and ``Dropout``, whose result changes from run to run
  (inference ``Dropout`` is a no-op and goes in ``RemoveNoOpsPass``);
- ``DequantizeLinear`` (and QDQ-style quantizers), which keep a quantized model's weights small: folding
  them would store float weights and lose the quantization, as onnxruntime also refuses;
- outputs that are not tensors, whose element type differs from the declared one, or that are larger than
  ``size_limit`` bytes (``None``: no limit), so a ``ConstantOfShape``/``Expand``/``Tile`` cannot blow a
  small model up beyond what the caller accepts.

A small result (at most :data:`SHARED_MAX_ELEMENTS` elements) equal to one this pass already stored in the
same graph (type, shape and bytes) is read from that initializer instead of a new one: the initializer
deduplication that runs after the loop would merge the two anyway, keeping the first. PyTorch exports
write a ``Constant`` node per use of a literal (MobileNetV2's 35 ``Clip`` bounds are 70 nodes holding two
values), and a new initializer cost ~25 us where a rewire costs ~5.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxforge.passes._evaluate import evaluate
from onnxforge.passes._util import (
    Names,
    all_nodes,
    const_array,
    has_ref_attributes,
    has_subgraphs,
    np_dtype,
    onnx_opset,
    remove_if_dead,
    replace_with_constant,
)

NOT_FOLDED = frozenset(
    {
        "RandomNormal",
        "RandomUniform",
        "RandomNormalLike",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
        "Dropout",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "If",
        "Loop",
        "Scan",
        "SequenceMap",
    }
)


# Results up to this many elements are shared between equal folds (the bound of onnx-ir's initializer
# deduplication, which would merge them later anyway).
SHARED_MAX_ELEMENTS = 1024

# Ops whose shape inference reads a float input's values (sizes, scales, ranges, depths), not only its shape.
_READ_FLOAT_DATA = frozenset({"Resize", "Upsample", "Range", "OneHot"})


def _teaches_nothing(out: ir.Value, array: np.ndarray) -> bool:
    """Whether onnx's shape inference, run again after ``out`` becomes the constant ``array``, would find
    what it found before: ``out`` already had this static shape and element type, and no reader infers from
    its values. Only floats qualify: onnx's data propagation carries integer shape vectors through Add,
    Concat, Gather... (e.g. into a Reshape), and the ops that read float values are known."""
    if array.dtype.kind != "f" or np_dtype(out) != array.dtype or out.shape is None:
        return False
    if tuple(out.shape) != array.shape or not all(type(dim) is int for dim in out.shape):
        return False
    for use in out.uses():
        reader = use.node
        if reader.domain not in ("", "ai.onnx") or reader.op_type in _READ_FLOAT_DATA or has_subgraphs(reader):
            return False
    return True


class FoldConstantsPass(ir.passes.InPlacePass):
    """Evaluate all-constant nodes with onnxforge kernels and store their outputs as initializers."""

    def __init__(self, size_limit: int | None = None) -> None:
        super().__init__()
        self.size_limit = size_limit
        # After a run: every fold left shape inference nothing new to find (see _teaches_nothing), so the
        # pipeline need not run it again for this pass's changes.
        self.kept_shapes = True
        # (graph, element type, dtype, shape, bytes) -> the initializer a fold of this run stored them in.
        self._stored: dict[tuple[object, ...], ir.Value] = {}

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        self._stored = {}  # per run: a pass object used again (on this model or another) holds no old graph
        names = Names(model)
        folded = 0
        with np.errstate(all="ignore"):  # once for the pass, not once per evaluated node
            for node in all_nodes(model):
                if node.graph is not None and self._fold(model, node, names):
                    folded += 1
        return ir.passes.PassResult(model, modified=folded > 0)

    def _fold(self, model: ir.Model, node: ir.Node, names: Names) -> bool:
        if node.op_type in NOT_FOLDED:
            return False
        # Non-constant inputs turn most nodes away, so they are tested first (every test here is a pure read).
        arrays: list[np.ndarray | None] = []
        for value in node.inputs:
            if value is None:
                arrays.append(None)
                continue
            if value.const_value is None:  # what const_array would turn away, tested without its calls
                producer = value.producer()
                if producer is None or producer.op_type != "Constant":
                    return False
            array = const_array(value)
            if array is None:
                return False
            arrays.append(array)
        if node.attributes and (has_subgraphs(node) or has_ref_attributes(node)):
            return False
        if not any(out.uses() or out.is_graph_output() for out in node.outputs):
            return False  # dead code: RemoveUnusedNodesPass takes it, no need to compute it
        results = evaluate(node, arrays, onnx_opset(model, node.domain), errors_ignored=True)
        if results is None or len(results) < sum(1 for out in node.outputs if out.name):
            return False
        for out, array in zip(node.outputs, results):
            declared = np_dtype(out)
            if declared is not None and declared != array.dtype:
                return False
            if array.dtype == object:
                return False
            if self.size_limit is not None and array.nbytes > self.size_limit:
                return False
        if self.kept_shapes and not all(_teaches_nothing(out, array) for out, array in zip(node.outputs, results)):
            self.kept_shapes = False
        for out, array in zip(node.outputs, results):
            if out.uses() or out.is_graph_output():
                self._store(node.graph, out, array, names)
        remove_if_dead(node)
        return True

    def _store(self, graph: ir.Graph | None, out: ir.Value, array: np.ndarray, names: Names) -> None:
        """Make ``out``'s readers read ``array`` from an initializer: one this run stored already when it holds
        the same small value (see the module docstring), else a new one. A graph output keeps its name, so
        it always gets its own."""
        key = None
        if array.size <= SHARED_MAX_ELEMENTS:
            key = (graph, out.dtype, array.dtype.str, array.shape, array.tobytes())
            same = self._stored.get(key)
            if same is not None and same.is_initializer() and not out.is_graph_output():
                out.replace_all_uses_with(same)
                return
        stored = replace_with_constant(out, array, names)
        if key is not None:
            self._stored[key] = stored
