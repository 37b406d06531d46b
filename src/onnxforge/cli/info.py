"""``onnxforge info MODEL``: what a model takes and gives, which ops it uses and how big its weights are.

Reads the protobuf only (external data is not loaded and no session is built), so it works on models
whose ops the engine cannot run yet.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import onnx
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from onnxforge.ir.dtypes import np_dtype_for, proto_type_string
from onnxforge.ir.load import load_model_proto

# Packed 4-bit types hold two elements per byte; numpy's stand-in dtypes take a whole byte each.
_HALF_BYTE_TYPES = {onnx.TensorProto.INT4, onnx.TensorProto.UINT4, onnx.TensorProto.FLOAT4E2M1}


@dataclass
class WeightStats:
    count: int = 0  # initializers
    parameters: int = 0  # elements
    nbytes: int = 0
    external: int = 0  # initializers whose bytes live in another file


def format_dims(type_proto: onnx.TypeProto) -> str:
    """``[batch, 1, 8, 8]``; ``?`` for an unnamed unknown dim; ``unknown rank`` when there is no shape."""
    kind = type_proto.WhichOneof("value")
    if kind not in ("tensor_type", "sparse_tensor_type"):
        return "-"
    tensor_type = getattr(type_proto, kind)
    if not tensor_type.HasField("shape"):
        return "unknown rank"
    dims = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(str(dim.dim_value))
        else:
            dims.append(dim.dim_param or "?")
    return "[" + ", ".join(dims) + "]"


def iter_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node, including those in If/Loop/Scan bodies."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from iter_nodes(attr.g)
            for sub in attr.graphs:
                yield from iter_nodes(sub)


def op_histogram(model: onnx.ModelProto) -> Counter[str]:
    """Op counts keyed ``Op`` for the default domain and ``domain::Op`` otherwise; nodes inside local functions count too."""
    counts: Counter[str] = Counter()
    nodes = list(iter_nodes(model.graph))
    for function in model.functions:
        nodes.extend(function.node)
    for node in nodes:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        counts[key] += 1
    return counts


def tensor_nbytes(tensor: onnx.TensorProto) -> int:
    """Stored size of an initializer, without reading external data."""
    numel = math.prod(tensor.dims)
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        info = {entry.key: entry.value for entry in tensor.external_data}
        if "length" in info:
            return int(info["length"])
    elif tensor.HasField("raw_data"):
        return len(tensor.raw_data)
    if tensor.data_type == onnx.TensorProto.STRING:
        return sum(len(s) for s in tensor.string_data)
    if tensor.data_type in _HALF_BYTE_TYPES:
        return (numel + 1) // 2
    return numel * np_dtype_for(tensor.data_type).itemsize


def weight_stats(graph: onnx.GraphProto) -> WeightStats:
    stats = WeightStats()
    tensors = list(graph.initializer) + [sparse.values for sparse in graph.sparse_initializer]
    for tensor in tensors:
        stats.count += 1
        stats.parameters += math.prod(tensor.dims)
        stats.nbytes += tensor_nbytes(tensor)
        stats.external += tensor.data_location == onnx.TensorProto.EXTERNAL
    return stats


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit} ({n} bytes)"
        value /= 1024
    raise AssertionError("unreachable")


def io_table(title: str, values: list[onnx.ValueInfoProto]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("name", style="cyan")
    table.add_column("type", no_wrap=True)
    table.add_column("shape", no_wrap=True)
    for value in values:
        table.add_row(Text(value.name), proto_type_string(value.type), Text(format_dims(value.type)))
    return table


def histogram_table(counts: Counter[str]) -> Table:
    table = Table(title="Ops", title_justify="left", caption=f"{sum(counts.values())} nodes", caption_justify="left")
    table.add_column("op", style="cyan")
    table.add_column("count", justify="right")
    for op, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        table.add_row(Text(op), str(count))
    return table


def summary_lines(model: onnx.ModelProto) -> list[str]:
    opsets = ", ".join(f"{entry.domain or 'ai.onnx'} {entry.version}" for entry in model.opset_import)
    producer = " ".join(part for part in (model.producer_name, model.producer_version) if part) or "-"
    lines = [
        f"IR version:  {model.ir_version}",
        f"opsets:      {opsets or '-'}",
        f"producer:    {producer}",
        f"graph:       {model.graph.name or '-'}",
    ]
    if model.doc_string:
        lines.append(f"doc:         {model.doc_string.strip().splitlines()[0]}")
    if model.functions:
        lines.append(f"functions:   {', '.join(f'{f.domain}::{f.name}' for f in model.functions)}")
    return lines


def info(
    model: Annotated[Path, typer.Argument(help="The .onnx file.", show_default=False)],
) -> None:
    """Show a model's inputs, outputs, opsets, IR version, producer, op histogram and parameter count."""
    proto, _ = load_model_proto(model)
    console = Console(highlight=False)
    console.print(Text(str(model), style="bold"))
    for line in summary_lines(proto):
        console.print(line, markup=False, soft_wrap=True)

    initializer_names = {tensor.name for tensor in proto.graph.initializer}
    # Models below IR 4 also list their initializers as inputs; those are weights, not things to feed.
    inputs = [value for value in proto.graph.input if value.name not in initializer_names]
    console.print(io_table("Inputs", inputs))
    console.print(io_table("Outputs", list(proto.graph.output)))
    console.print(histogram_table(op_histogram(proto)))

    stats = weight_stats(proto.graph)
    console.print(f"parameters:  {stats.parameters:,} in {stats.count} initializers", markup=False)
    external = f", {stats.external} stored as external data" if stats.external else ""
    console.print(f"weights:     {human_bytes(stats.nbytes)}{external}", markup=False)
