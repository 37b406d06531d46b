"""Evaluate one node on constant inputs with the onnxforge kernel the session would run.

Attributes and build-time context (``_num_outputs``, ``_opset``, ``_output_dtypes``) are bound the way the
plan binds them, so a folded value is exactly what the engine would have computed at run time. Nodes with
subgraphs (which need sub-plans and outer-scope values) are not evaluated here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir

import onnxforge.runtime.kernels  # noqa: F401 - registers the built-in kernels
from onnxforge.ir.arrays import tensor_array as tensor_to_numpy
from onnxforge.ir.dtypes import np_dtype_for
from onnxforge.runtime.plan_builder import output_count
from onnxforge.runtime.registry import REGISTRY


def _attribute_value(attribute: ir.Attr) -> Any:
    kind = attribute.type
    value = attribute.value
    if kind in (ir.AttributeType.INTS, ir.AttributeType.FLOATS, ir.AttributeType.STRINGS):
        return list(value)
    if kind == ir.AttributeType.TENSOR:
        return tensor_to_numpy(value)
    if kind == ir.AttributeType.TENSORS:
        return [tensor_to_numpy(t) for t in value]
    return value


def _output_dtype(value: ir.Value) -> np.dtype | None:
    if value.dtype is None or value.dtype == ir.DataType.UNDEFINED:
        return None
    try:
        return np_dtype_for(value.dtype)
    except Exception:
        return None


def has_kernel(node: ir.Node, opset: int) -> bool:
    return REGISTRY.resolve(node.domain, node.op_type, opset) is not None


def evaluate(
    node: ir.Node, inputs: list[np.ndarray | None], opset: int, *, errors_ignored: bool = False
) -> list[np.ndarray] | None:
    """The node's outputs computed by its kernel, or None when there is no kernel or it fails.

    ``errors_ignored``: the caller already runs under ``np.errstate(all="ignore")`` (entering it costs
    more than evaluating a small node), so it is not entered again here."""
    kdef = REGISTRY.resolve(node.domain, node.op_type, opset)
    if kdef is None or "_outer" in kdef.context:
        return None
    kwargs: dict[str, Any] = {}
    for name, attribute in node.attributes.data.items():  # the UserDict's dict: no Mapping lookup per item
        if attribute.is_ref() or attribute.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS):
            return None
        if name not in kdef.attributes and not kdef.accepts_any_attribute:
            return None
        kwargs[name] = _attribute_value(attribute)
    if kdef.required - set(kwargs):
        return None
    if "_num_outputs" in kdef.context:
        kwargs["_num_outputs"] = output_count(node)
    if "_opset" in kdef.context:
        kwargs["_opset"] = opset
    if "_output_dtypes" in kdef.context:
        kwargs["_output_dtypes"] = tuple(_output_dtype(v) for v in node.outputs)
    args = list(inputs)
    while args and args[-1] is None:
        args.pop()
    try:
        if errors_ignored:
            result = kdef.fn(*args, **kwargs)
        else:
            with np.errstate(all="ignore"):
                result = kdef.fn(*args, **kwargs)
    except Exception:  # the engine would raise at run time too; leave the node for it to report
        return None
    results = result if isinstance(result, tuple) else (result,)
    arrays: list[np.ndarray] = []
    for item in results:
        if isinstance(item, np.generic):
            item = np.asarray(item)
        if not isinstance(item, np.ndarray):  # sequences, optionals and maps do not become initializers
            return None
        arrays.append(item)
    return arrays
