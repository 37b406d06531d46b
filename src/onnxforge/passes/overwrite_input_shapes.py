"""Pin graph-input shapes: ``overwrite_input_shapes={"x": [1, 3, 224, 224]}`` replaces ``x``'s declared shape.

Symbolic dims (``batch``, ``seq``) become the given ints, which lets shape folding and the no-op rules
fire; a string keeps (or sets) a symbolic dim, ``None`` an unknown one. The result is only valid for
inputs of the pinned shapes, which is what the caller asks for, and the verification feeds exactly those.
A name that is not a graph input, or a rank that contradicts a declared rank, is an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx_ir as ir

from onnxforge._errors import InvalidArgument

Dim = int | str | None


def parse_shape_spec(spec: str) -> tuple[str | None, list[Dim]]:
    """``"x:1,3,224,224"`` (or ``"1,3,224,224"`` for the only input) as ``("x", [1, 3, 224, 224])``."""
    name, _, dims_text = spec.rpartition(":")
    dims: list[Dim] = []
    for item in dims_text.split(","):
        item = item.strip()
        if not item:
            continue
        if item in ("?", "-1"):
            dims.append(None)
        elif item.lstrip("-").isdigit():
            dims.append(int(item))
        else:
            dims.append(item)
    return (name or None), dims


class OverwriteInputShapesPass(ir.passes.InPlacePass):
    """Set the declared shapes of the named graph inputs."""

    def __init__(self, shapes: Mapping[str | None, Sequence[Dim]]) -> None:
        super().__init__()
        self.shapes = dict(shapes)

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        inputs = {value.name: value for value in model.graph.inputs if value.const_value is None}
        modified = False
        for name, dims in self.shapes.items():
            if name is None:
                if len(inputs) != 1:
                    raise InvalidArgument(
                        f"an input shape without a name needs a model with one input; it has {sorted(inputs)}"
                    )
                name = next(iter(inputs))
            value = inputs.get(name)
            if value is None:
                raise InvalidArgument(
                    f"overwrite_input_shapes: '{name}' is not a graph input; inputs are {sorted(inputs)}"
                )
            if value.shape is not None and len(value.shape) != len(dims):
                raise InvalidArgument(
                    f"overwrite_input_shapes: '{name}' has rank {len(value.shape)}, got {len(dims)} dims"
                )
            new_shape = ir.Shape([ir.SymbolicDim(d) if not isinstance(d, int) else d for d in dims])
            if value.shape != new_shape:
                value.shape = new_shape
                modified = True
        return ir.passes.PassResult(model, modified=modified)
