"""Shape and type inference (onnx's), quiet, non-strict, and for tensor values only.

The shape-aware rules (shape folding, no-op Reshape/Expand/Slice, broadcast checks) read the dims this
pass writes onto values. onnx's inference runs in non-strict mode with data propagation, so a graph it
cannot fully type still gets the shapes it can, and a failure leaves the shapes as they were.

The model goes to onnx through onnx-ir's ``call_onnx_api``, which detaches large initializers first so
this stays cheap on big models (and works above protobuf's 2 GB). The merge back is our own rather than
onnx-ir's ``ShapeInferencePass``: that one assigns ``dtype`` on every value, which turns a sequence or
optional value (``SequenceEmpty``'s output, a Loop's carried sequence) into a tensor and makes the model
fail type checking. Here only tensor types are taken, and only where inference knows more.
"""

from __future__ import annotations

import logging

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import _c_api_utils

_log = logging.getLogger("onnxforge.passes")


def _infer(proto: onnx.ModelProto) -> onnx.ModelProto:
    return onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True)


def _merge(target: ir.Value, inferred: ir.Value) -> bool:
    if not isinstance(inferred.type, ir.TensorType) or (target.type is not None and not isinstance(target.type, ir.TensorType)):
        return False
    if target.is_graph_input() or (target.is_graph_output() and target.shape is not None):
        return False  # a declared signature is the caller's, not inference's
    changed = False
    if target.type is None or target.dtype in (None, ir.DataType.UNDEFINED):
        target.type = inferred.type
        changed = True
    if inferred.shape is not None and target.shape != inferred.shape and inferred.dtype == target.dtype:
        if target.shape is None or len(target.shape) == len(inferred.shape):
            target.shape = inferred.shape
            changed = True
    return changed


class InferShapesPass(ir.passes.InPlacePass):
    """Annotate tensor values with onnx-inferred shapes and element types; never changes the graph's nodes."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        try:
            inferred = ir.serde.deserialize_model(_c_api_utils.call_onnx_api(_infer, model))
        except Exception as exc:  # inference is a help for the rules, not a requirement
            _log.debug("shape inference failed: %s", exc)
            return ir.passes.PassResult(model, modified=False)
        modified = False
        for graph, inferred_graph in zip(model.graphs(), inferred.graphs()):
            known = ir.convenience.create_value_mapping(inferred_graph, include_subgraphs=False)
            for name, value in ir.convenience.create_value_mapping(graph, include_subgraphs=False).items():
                match = known.get(name)
                if match is not None and _merge(value, match):
                    modified = True
        return ir.passes.PassResult(model, modified=modified)
