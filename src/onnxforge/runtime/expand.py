"""Expand function-bodied ops that have no kernel, and inline model-local functions, before planning.

An op whose onnx schema carries a function body (static, or built from the node's attributes and input
types) can run as that body. For each node whose (domain, op, opset) has no kernel but has such a body,
the node is renamed to a private op in a private domain, the body is added as a model-local function of
that name, and onnx's inliner (``onnx.inliner.inline_local_functions``) does the substitution of inputs,
outputs and attribute references. Model-local functions the user wrote are inlined the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx
import onnx.inliner
from onnx import defs

from onnxforge.ir.protos import graphs_in

EXPANDED_DOMAIN = "onnxforge.expanded"

HasKernel = Callable[[str, str, int], bool]


def _value_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is only a help for context-dependent bodies; carry on without it
        inferred = model
    types: dict[str, onnx.TypeProto] = {}
    for graph in graphs_in(inferred.graph):
        for info in list(graph.input) + list(graph.output) + list(graph.value_info):
            types[info.name] = info.type
        for tensor in graph.initializer:
            types[tensor.name] = onnx.helper.make_tensor_type_proto(tensor.data_type, list(tensor.dims))
    return types


def _body_for(node: onnx.NodeProto, opset: int, types: dict[str, onnx.TypeProto] | None) -> onnx.FunctionProto | None:
    try:
        schema = defs.get_schema(node.op_type, opset, node.domain)
    except defs.SchemaError:
        return None
    if schema.has_function:
        version = _body_version(schema.function_opset_versions, opset)
        raw = schema.get_function_with_opset_version(version) if version else schema.function_body.SerializeToString()
        return _parse_body(raw)
    if schema.has_context_dependent_function and types is not None:
        input_types = [types.get(name, onnx.TypeProto()) for name in node.input if name]
        if any(not t.HasField("tensor_type") for t in input_types):
            return None
        version = _body_version(schema.context_dependent_function_opset_versions, opset)
        encoded_types = [t.SerializeToString() for t in input_types]
        try:
            if version:
                raw = schema.get_context_dependent_function_with_opset_version(
                    version, node.SerializeToString(), encoded_types
                )
            else:
                raw = schema.get_context_dependent_function(node.SerializeToString(), encoded_types)
        except Exception:  # onnx refuses to build a body for these inputs: leave the node to the plan
            return None
        return _parse_body(raw)
    return None


def _add_default_attributes(node: onnx.NodeProto, opset: int) -> None:
    """Spell out the schema's attribute defaults on the node: body attributes refer to them by name, and the
    schema's function bodies do not carry the defaults themselves, so the inliner would drop them."""
    schema = defs.get_schema(node.op_type, opset, node.domain)
    present = {attr.name for attr in node.attribute}
    for name, spec in schema.attributes.items():
        if name not in present and spec.default_value.type != onnx.AttributeProto.UNDEFINED:
            default = onnx.AttributeProto()
            default.CopyFrom(spec.default_value)
            default.name = name
            node.attribute.append(default)


def _body_version(versions: list[int], opset: int) -> int | None:
    """The newest version of a function body that is not newer than the model's opset."""
    usable = [v for v in versions if v <= opset]
    return max(usable) if usable else None


def _parse_body(raw: bytes) -> onnx.FunctionProto | None:
    body = onnx.FunctionProto()
    body.ParseFromString(raw)
    return body if body.node else None


def _kernelless(model: onnx.ModelProto, opsets: dict[str, int], has_kernel: HasKernel) -> list[onnx.NodeProto]:
    local = {(f.domain, f.name) for f in model.functions}
    # One kernel lookup per distinct op, not per node (a model repeats a few ops hundreds of times).
    lacking: dict[tuple[str, str], bool] = {}
    found: list[onnx.NodeProto] = []
    for graph in graphs_in(model.graph):
        for node in graph.node:
            op = (node.domain, node.op_type)
            missing = lacking.get(op)
            if missing is None:
                domain = op[0] or ""
                missing = lacking[op] = (
                    op not in local and domain in opsets and not has_kernel(domain, op[1], opsets[domain])
                )
            if missing:
                found.append(node)
    return found


def expand_functions(model: onnx.ModelProto, has_kernel: HasKernel) -> onnx.ModelProto:
    """Return ``model`` with kernel-less function ops expanded and local functions inlined (a copy if changed)."""
    opsets = {entry.domain or "": entry.version for entry in model.opset_import}
    if not _kernelless(model, opsets, has_kernel) and not model.functions:
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    pending = _kernelless(model, opsets, has_kernel)
    types: dict[str, onnx.TypeProto] | None = None
    expanded = 0
    for index, node in enumerate(pending):
        opset = opsets[node.domain or ""]
        body = _body_for(node, opset, None)
        if body is None:
            if types is None:
                types = _value_types(model)
            body = _body_for(node, opset, types)
        if body is None:
            continue  # no body either: the plan reports the missing kernel
        _add_default_attributes(node, opset)
        function = onnx.FunctionProto()
        function.CopyFrom(body)
        function.domain = EXPANDED_DOMAIN
        function.name = f"{node.op_type}_{index}"
        if not any(o.domain == (node.domain or "") for o in function.opset_import):
            function.opset_import.append(onnx.helper.make_opsetid(node.domain or "", opset))
        model.functions.append(function)
        node.domain, node.op_type = EXPANDED_DOMAIN, function.name
        expanded += 1
    if not expanded and not model.functions:
        return model
    if not any(o.domain == EXPANDED_DOMAIN for o in model.opset_import) and expanded:
        model.opset_import.append(onnx.helper.make_opsetid(EXPANDED_DOMAIN, 1))
    inlined = _inline(model)
    kept = [o for o in inlined.opset_import if o.domain != EXPANDED_DOMAIN]
    del inlined.opset_import[:]
    inlined.opset_import.extend(kept)
    return inlined


def _inline(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx's inliner, converting a function whose body imports another ONNX opset than the model's (which
    it otherwise leaves as a call no kernel runs; onnxruntime runs it). The conversion needs every value's
    type, so it works on the model with inferred types; when it cannot, the functions are inlined as they are."""
    try:
        typed = onnx.shape_inference.infer_shapes(model)
        return onnx.inliner.inline_local_functions(typed, convert_version=True)
    except Exception:  # noqa: BLE001 - onnx's inference or converter gave up: inline without converting
        return onnx.inliner.inline_local_functions(model)
