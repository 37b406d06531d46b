"""The benchmark suite: which models, where their files come from, and what they are fed.

Three sources:

- the "light" models onnx ships under ``onnx/backend/test/data/light/``, with seeded random weights in
  place of their constant fills (see :func:`randomized_light_model`), fed as onnx's backend runner feeds
  them (``arange(n) / n`` as float32 in the declared shape);
- the plain-PyTorch models of :mod:`onnxforge.bench.torch_models`, exported once into the cache folder;
- a dispatch-overhead probe built in code: a chain of tiny elementwise nodes on a ``[16]`` tensor, where
  the kernels do next to nothing, so latency / node count is the engine's per-node overhead.

A case is resolved lazily (:meth:`CaseSpec.resolve`) so a failing torch export becomes one error row in
the report instead of stopping the suite.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxforge.bench import torch_models

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = ["resnet50", "densenet121", "inception_v2", "shufflenet", "squeezenet", "vgg19"]
PROBE_NAME = "dispatch_probe"
PROBE_NODES = 1000


def default_cache_dir() -> Path:
    """``benchmarks/cache`` under the working directory (git-ignored), or ``$ONNXFORGE_BENCH_CACHE``."""
    return Path(os.environ.get("ONNXFORGE_BENCH_CACHE", Path.cwd() / "benchmarks" / "cache"))


@dataclass
class Case:
    """A model ready to benchmark: its file, its feeds, and where it came from."""

    name: str
    path: Path
    feeds: dict[str, np.ndarray]
    source: str
    node_count: int = 0
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CaseSpec:
    """A suite entry that knows how to produce its :class:`Case` (possibly by exporting a torch model)."""

    name: str
    source: str
    make: Callable[[Path], Case]

    def resolve(self, cache_dir: Path) -> Case:
        return self.make(cache_dir)


# ----- feeds --------------------------------------------------------------------------------------------
_INT_KINDS = {
    TensorProto.INT8,
    TensorProto.INT16,
    TensorProto.INT32,
    TensorProto.INT64,
    TensorProto.UINT8,
    TensorProto.UINT16,
    TensorProto.UINT32,
    TensorProto.UINT64,
}


def declared_shape(value_info: onnx.ValueInfoProto, dims: Mapping[str, int]) -> tuple[int, ...]:
    """The input's shape with symbolic dims taken from ``dims`` (unnamed/unknown dims default to 1)."""
    shape = []
    for dim in value_info.type.tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            shape.append(dim.dim_value)
        elif dim.dim_param and dim.dim_param in dims:
            shape.append(int(dims[dim.dim_param]))
        elif dim.dim_param:
            raise ValueError(
                f"input '{value_info.name}' has symbolic dim '{dim.dim_param}'; give it with --dim {dim.dim_param}=VALUE"
            )
        else:
            shape.append(1)
    return tuple(shape)


def arange_feed(value_info: onnx.ValueInfoProto, dims: Mapping[str, int]) -> np.ndarray:
    """onnx's backend-runner input: ``arange(n) / n``; ints get ``arange % 2`` (any id table has 0 and 1)."""
    shape = declared_shape(value_info, dims)
    count = int(np.prod(shape, dtype=np.int64))
    elem = value_info.type.tensor_type.elem_type
    if elem == TensorProto.BOOL:
        return (np.arange(count) % 2 == 0).reshape(shape)
    if elem in _INT_KINDS:
        dtype = helper.tensor_dtype_to_np_dtype(elem)
        return (np.arange(count) % 2).astype(dtype).reshape(shape)
    dtype = helper.tensor_dtype_to_np_dtype(elem) if elem else np.dtype(np.float32)
    return (np.arange(count).reshape(shape) / max(count, 1)).astype(dtype)


def feeds_for(model: onnx.ModelProto, dims: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    """Feeds for every graph input that is not an initializer."""
    initializers = {t.name for t in model.graph.initializer}
    return {vi.name: arange_feed(vi, dims or {}) for vi in model.graph.input if vi.name not in initializers}


def count_nodes(path: Path) -> int:
    return len(onnx.load(str(path), load_external_data=False).graph.node)


# ----- cases --------------------------------------------------------------------------------------------
def model_case(
    path: Path, dims: Mapping[str, int] | None = None, name: str | None = None, source: str = "user"
) -> Case:
    """A case for any .onnx file; symbolic input dims must be given in ``dims``."""
    model = onnx.load(str(path), load_external_data=False)
    return Case(name or Path(path).stem, Path(path), feeds_for(model, dims), source, len(model.graph.node))


def randomized_light_model(name: str, cache_dir: Path) -> Path:
    """The light model with seeded random weights in place of its ConstantOfShape ones, cached.

    onnx ships the light models with every weight tensor a ``ConstantOfShape`` fill: all filters of a layer
    are identical. That makes them degenerate benchmarks (an engine may compute one filter and copy it, as
    onnxforge does for exact ties) and ill-conditioned checks (a Softmax over ~1e10 logits that are equal
    up to rounding). The suite keeps their graphs and shapes and draws realistic weights instead, the same
    for every engine: He-scaled normal for tensors of rank >= 2, uniform(0.5, 1.5) for vectors (biases,
    BatchNormalization scales, means and positive variances).
    """
    path = Path(cache_dir) / f"light_{name}-random-v2.onnx"
    if path.exists():
        return path
    model = onnx.load(str(LIGHT_DIR / f"light_{name}.onnx"))
    shapes = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    rng = np.random.default_rng(0)
    kept = []
    for node in model.graph.node:
        value_attr = next((a for a in node.attribute if a.name == "value"), None)
        is_float = value_attr is None or value_attr.t.data_type == TensorProto.FLOAT
        if node.op_type == "ConstantOfShape" and node.input and node.input[0] in shapes and is_float:
            shape = tuple(int(v) for v in shapes[node.input[0]])
            if len(shape) >= 2:
                fan_in = max(1, int(np.prod(shape[1:])))
                value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
            else:
                value = rng.uniform(0.5, 1.5, shape)
            model.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), node.output[0]))
            # These models are IR version 3, where every initializer must also be a graph input.
            model.graph.input.append(helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, shape))
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    # Drop the shape tensors nothing reads any more (ORT warns about each unused initializer).
    used = {name for node in kept for name in node.input}
    unused = {t.name for t in model.graph.initializer if t.name not in used and t.name in shapes}
    kept_inits = [t for t in model.graph.initializer if t.name not in unused]
    kept_inputs = [i for i in model.graph.input if i.name not in unused]
    del model.graph.initializer[:], model.graph.input[:]
    model.graph.initializer.extend(kept_inits)
    model.graph.input.extend(kept_inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _light(name: str) -> CaseSpec:
    def make(cache_dir: Path) -> Case:
        case = model_case(randomized_light_model(name, cache_dir), name=name, source="onnx-light")
        case.notes["weights"] = "seeded random (onnx ships constant fills)"
        return case

    return CaseSpec(name, "onnx-light", make)


def _torch(name: str) -> CaseSpec:
    def make(cache_dir: Path) -> Case:
        path = torch_models.export(name, cache_dir)
        return Case(name, path, torch_models.make_inputs(name), "torch", count_nodes(path))

    return CaseSpec(name, "torch", make)


def dispatch_probe_model(nodes: int = PROBE_NODES, width: int = 16) -> onnx.ModelProto:
    """``nodes`` alternating ``Add 0.5`` / ``Mul 0.5`` on a float [width]: the kernels are ~free, dispatch is not.

    Not Add 0 / Mul 1: optimizers (ORT's and onnxforge's no-op removal) would delete those nodes and the
    probe would measure nothing. The chain converges to 0.5, so values stay finite however long it is.
    """
    half = helper.make_tensor("half", TensorProto.FLOAT, [width], np.full(width, 0.5, np.float32).tolist())
    graph_nodes, previous = [], "x"
    for i in range(nodes):
        op = "Add" if i % 2 == 0 else "Mul"
        out = "y" if i == nodes - 1 else f"t{i}"
        graph_nodes.append(helper.make_node(op, [previous, "half"], [out], name=f"{op.lower()}_{i}"))
        previous = out
    graph = helper.make_graph(
        graph_nodes,
        "dispatch_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [width])],
        [half],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnxforge.bench")
    model.ir_version = 8  # what ORT 1.18+ accepts for opset 17
    onnx.checker.check_model(model)
    return model


def _probe(nodes: int = PROBE_NODES) -> CaseSpec:
    def make(cache_dir: Path) -> Case:
        path = Path(cache_dir) / f"{PROBE_NAME}_{nodes}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(dispatch_probe_model(nodes), str(path))  # ~50 KB, rewritten so it always matches this code
        feeds = {"x": np.linspace(-1.0, 1.0, 16, dtype=np.float32)}
        return Case(PROBE_NAME, path, feeds, "probe", nodes)

    return CaseSpec(PROBE_NAME, "probe", make)


def suite_specs() -> list[CaseSpec]:
    """Every suite entry, in report order: onnx's light models, the torch exports, then the probe."""
    return [_light(n) for n in LIGHT_MODELS] + [_torch(n) for n in torch_models.TORCH_MODELS] + [_probe()]


def select(models: list[str] | None) -> list[CaseSpec]:
    """The suite entries named in ``models`` (all when None), in suite order; unknown names are an error."""
    specs = suite_specs()
    if not models:
        return specs
    known = {spec.name: spec for spec in specs}
    unknown = [m for m in models if m not in known]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; the suite has: {', '.join(known)}")
    return [spec for spec in specs if spec.name in set(models)]
