"""Initializers that are also graph inputs become plain constants (removed from the graph's inputs).

Before IR version 4 every initializer had to be listed as a graph input too, which makes it a default a
caller may override at run time, so no pass may fold it. onnx's light models and many Caffe2 and old
PyTorch exports are like that. Treating them as constants (onnxsim's default, and ours in ``simplify``)
removes them from the inputs, which onnx-ir's ``RemoveInitializersFromInputsPass`` does, and raises the
IR version to 4, the first that allows an initializer that is not an input. A session never runs this
pass: there the overriding stays possible.
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes.common import RemoveInitializersFromInputsPass

FIRST_IR_WITHOUT_INPUT_INITIALIZERS = 4


class InitializersAsConstantsPass(ir.passes.InPlacePass):
    """Drop initializers from the graph inputs, so they count as constants, and lift the IR version to 4."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        result = RemoveInitializersFromInputsPass()(model)
        if result.modified and model.ir_version < FIRST_IR_WITHOUT_INPUT_INITIALIZERS:
            model.ir_version = FIRST_IR_WITHOUT_INPUT_INITIALIZERS
        return ir.passes.PassResult(model, modified=result.modified)
