"""Graph passes over onnx-ir models: ``simplify`` (verified, onnxsim-like) and ``optimize`` (session levels).

One onnx-ir pass per module; ``pipeline`` names and orders them; ``simplify`` runs them to a fixed point
and checks the result with the onnxforge engine; ``presets.optimize`` is what ``InferenceSession`` uses
for its ``graph_optimization_level``, installed into the runtime's hook when this package is imported.
"""

from onnxforge.passes.pipeline import PASS_NAMES, PassFailed, run_passes
from onnxforge.passes.presets import optimize
from onnxforge.passes.report import SimplifyReport
from onnxforge.passes.simplify import save_model, simplify, simplify_file, simplify_ir
from onnxforge.runtime.optimizer_hook import set_graph_optimizer

set_graph_optimizer(optimize)

__all__ = [
    "PASS_NAMES",
    "PassFailed",
    "SimplifyReport",
    "optimize",
    "run_passes",
    "save_model",
    "simplify",
    "simplify_file",
    "simplify_ir",
]
