"""What building an ``InferenceSession`` needs besides the plan: process tuning while it builds, the checks
and edits of the model on the way in, and the protobuf header a built session keeps."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import onnx
import onnx_ir as ir

from onnxforge.runtime.options import SessionOptions
from onnxforge.runtime.registry import REGISTRY

AVAILABLE_PROVIDERS = ["CPUExecutionProvider"]


def tune_malloc(options: SessionOptions) -> None:
    """Keep glibc from handing multi-MB temporaries back to the OS after every kernel (and re-faulting them).

    Measured at 1 thread: digits CNN 27 -> 7.6 ms, squeezenet 36 -> 16 ms, peak RSS +1-4 MB. 32 MB is the
    largest mmap threshold glibc accepts on 64-bit. Opt out with the session config entry
    ``session.onnxforge.mallopt=0``. Process-wide, like ORT's own arena, and idempotent.
    """
    if not sys.platform.startswith("linux") or options._config.get("session.onnxforge.mallopt", "1") != "1":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl): nothing to tune
        return
    libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD


def header_of(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The parts of ``proto`` a built session reads (metadata, input and output types): no nodes, no weights."""
    header = onnx.ModelProto(
        ir_version=proto.ir_version,
        producer_name=proto.producer_name,
        producer_version=proto.producer_version,
        domain=proto.domain,
        model_version=proto.model_version,
        doc_string=proto.doc_string,
    )
    header.opset_import.extend(proto.opset_import)
    header.metadata_props.extend(proto.metadata_props)
    header.graph.name, header.graph.doc_string = proto.graph.name, proto.graph.doc_string
    header.graph.input.extend(proto.graph.input)
    header.graph.output.extend(proto.graph.output)
    return header


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector while a session is built.

    Loading, optimizing and planning allocate hundreds of thousands of small objects that live as long as
    the build (onnx-ir graphs are full of cycles: nodes <-> values <-> graph). Every 700 allocations the
    collector walks the young ones, and every so often all of them: on shufflenet that was a third of the
    build. Paused, the build's objects are walked once, by the young-generation collection at the end.
    Process-wide, like the collector itself; a concurrent build merely re-enables it early.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        # The build's garbage (the onnx-ir model and its weights, all cycles) is young: collect it now, in a
        # few ms, instead of when some later allocation trips the collector. Otherwise back-to-back builds
        # (a model reloaded, a test loop) each left a whole model behind: light ResNet-50 built seven times
        # in a row grew RSS by 100 MB a build (250 -> 800 MB); now it stays at 113 MB.
        gc.collect(0)


def has_kernel(domain: str, op_type: str, opset: int) -> bool:
    return REGISTRY.resolve(domain, op_type, opset) is not None


def resolve_providers(providers: Sequence[Any] | None) -> list[str]:
    for entry in providers or []:
        name = entry[0] if isinstance(entry, (tuple, list)) else entry
        if name not in AVAILABLE_PROVIDERS:
            warnings.warn(
                f"Specified provider '{name}' is not in available provider names."
                f"Available providers: '{', '.join(AVAILABLE_PROVIDERS)}'",
                UserWarning,
                stacklevel=3,
            )
    return list(AVAILABLE_PROVIDERS)


def constant_initializers_before_ir4(model: ir.Model) -> None:
    """Below IR version 4 every initializer had to be listed as a graph input too, yet meant a constant:
    like onnxruntime (which disallows overriding them there), drop them from the inputs so the optimizer
    can fold and fuse them. From IR 4 on, an initializer that is also an input is overridable."""
    if model.ir_version >= 4:
        return
    graph = model.graph
    kept = [value for value in graph.inputs if value.name not in graph.initializers]
    if len(kept) != len(graph.inputs):
        graph.inputs.clear()
        graph.inputs.extend(kept)
