"""``onnxforge run MODEL``: feed a model from files or random data and show (or save) what it returns.

Inputs come from ``--input NAME=FILE`` (.npy, .npz or a serialized ``TensorProto`` .pb) or, with
``--random``, from each input's declared dtype and shape, with symbolic dims set by ``--dim NAME=VALUE``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import onnx
import typer
from onnx import numpy_helper
from rich.console import Console
from rich.table import Table
from rich.text import Text

from onnxforge._errors import InvalidArgument
from onnxforge.ir.dtypes import elem_type_name, np_dtype_for
from onnxforge.runtime.options import NodeArg
from onnxforge.runtime.session import InferenceSession

# ORT's type string (``tensor(float)``) back to the dtype; built from onnx's own list so it stays complete.
_DTYPES: dict[str, np.dtype] = {}
for _elem_type in onnx.TensorProto.DataType.values():
    try:
        _DTYPES[f"tensor({elem_type_name(_elem_type)})"] = np_dtype_for(_elem_type)
    except (KeyError, ValueError, TypeError):  # UNDEFINED and types numpy cannot hold
        continue


def parse_assignment(text: str, option: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise InvalidArgument(f"{option} expects NAME=VALUE, got '{text}'")
    return name, value


def parse_dims(specs: list[str]) -> dict[str, int]:
    dims: dict[str, int] = {}
    for spec in specs:
        name, value = parse_assignment(spec, "--dim")
        try:
            dims[name] = int(value)
        except ValueError:
            raise InvalidArgument(f"--dim {spec}: '{value}' is not an integer") from None
        if dims[name] < 0:
            raise InvalidArgument(f"--dim {spec}: a dim cannot be negative")
    return dims


def load_array(path: Path, name: str | None) -> dict[str, np.ndarray]:
    """Arrays from one file, keyed by input name; ``name`` is None when the file itself names them."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if name is None:
            raise InvalidArgument(f"--input {path}: a .npy file holds one unnamed array; write NAME={path}")
        return {name: np.load(path, allow_pickle=False)}
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        if name is None:
            return arrays
        if name in arrays:
            return {name: arrays[name]}
        if len(arrays) == 1:
            return {name: next(iter(arrays.values()))}
        raise InvalidArgument(f"--input {name}={path}: the archive has no array '{name}' (it has {sorted(arrays)})")
    if suffix == ".pb":
        tensor = onnx.TensorProto()
        tensor.ParseFromString(path.read_bytes())
        key = name or tensor.name
        if not key:
            raise InvalidArgument(f"--input {path}: the TensorProto has no name; write NAME={path}")
        return {key: numpy_helper.to_array(tensor)}
    raise InvalidArgument(f"--input {path}: expected a .npy, .npz or .pb file")


def load_inputs(specs: list[str]) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        if "=" in spec:
            name, value = parse_assignment(spec, "--input")
            feeds.update(load_array(Path(value), name))
        else:
            feeds.update(load_array(Path(spec), None))
    return feeds


def concrete_shape(arg: NodeArg, dims: dict[str, int]) -> tuple[int, ...]:
    if not arg.rank_known:
        raise InvalidArgument(f"--random: input '{arg.name}' has no declared shape; feed it with --input")
    shape = []
    for index, dim in enumerate(arg.shape):
        if isinstance(dim, int):
            shape.append(dim)
        elif isinstance(dim, str) and dim in dims:
            shape.append(dims[dim])
        elif isinstance(dim, str):
            raise InvalidArgument(f"--random: input '{arg.name}' has symbolic dim '{dim}'; set it with --dim {dim}=N")
        else:
            raise InvalidArgument(
                f"--random: input '{arg.name}' dim {index} is unknown and unnamed; feed it with --input"
            )
    return tuple(shape)


def random_array(arg: NodeArg, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    dtype = _DTYPES.get(arg.type)
    if dtype is None or dtype.kind == "O":
        raise InvalidArgument(f"--random: cannot make random values of type {arg.type} for input '{arg.name}'")
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        # Small non-negative integers are valid for the usual integer inputs: indices, ids, lengths.
        return rng.integers(0, 10, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def random_inputs(
    args: list[NodeArg], given: dict[str, np.ndarray], dims: dict[str, int], seed: int
) -> dict[str, np.ndarray]:
    declared = {dim for arg in args for dim in (arg.shape or []) if isinstance(dim, str)}
    unknown = sorted(set(dims) - declared)
    if unknown:  # a typo would otherwise be silently ignored
        raise InvalidArgument(f"--dim {', '.join(unknown)}: no input has such a dim (they have {sorted(declared)})")
    rng = np.random.default_rng(seed)
    return {arg.name: random_array(arg, concrete_shape(arg, dims), rng) for arg in args if arg.name not in given}


def summarize(value: Any) -> tuple[str, str, str]:
    """(shape, dtype, summary) for one output."""
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):  # ZipMap's rows: show the first ones' entries
            rows = "; ".join(
                "{" + ", ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items()) + "}"
                for row in value[:2]
            )
            return f"sequence of {len(value)} maps", "-", rows + ("; ..." if len(value) > 2 else "")
        return f"sequence of {len(value)}", "-", ", ".join(str(np.shape(v)) for v in value[:4])
    if isinstance(value, dict):
        return f"map of {len(value)}", "-", ", ".join(f"{k}: {v}" for k, v in list(value.items())[:4])
    if value is None:
        return "-", "-", "None (empty optional)"
    array = np.asarray(value)
    shape = "[" + ", ".join(str(d) for d in array.shape) + "]"
    head = np.array2string(array.reshape(-1)[:6], precision=4, separator=", ", threshold=6)
    if array.size and array.dtype.kind in "fiub":
        numbers = array.astype(np.float64)
        stats = f"min {numbers.min():.4g}  max {numbers.max():.4g}  mean {numbers.mean():.4g}"
        return shape, str(array.dtype), f"{stats}  first {head}"
    return shape, str(array.dtype), f"first {head}"


def run(
    model: Annotated[Path, typer.Argument(help="The .onnx file.", show_default=False)],
    inputs: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", help="NAME=FILE.npy|.npz|.pb, or FILE.npz/.pb whose keys name the inputs."),
    ] = None,
    use_random: Annotated[bool, typer.Option("--random", help="Fill the inputs not given with random data.")] = False,
    dim: Annotated[
        list[str] | None, typer.Option("--dim", help="NAME=VALUE for a symbolic dim, with --random.")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Save the outputs to this .npz.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for --random.")] = 0,
) -> None:
    """Run MODEL on inputs from files or random data and print each output's shape, dtype and values."""
    session = InferenceSession(model)
    args = session.get_inputs()
    feeds = load_inputs(inputs or [])
    if use_random:
        feeds.update(random_inputs(args, feeds, parse_dims(dim or []), seed))
    elif dim:
        raise InvalidArgument("--dim only applies with --random")
    missing = [arg.name for arg in args if arg.name not in feeds]
    if missing:
        raise InvalidArgument(f"no data for input(s) {missing}; pass --input NAME=FILE or --random")

    results = session.run(None, feeds)
    names = [arg.name for arg in session.get_outputs()]
    table = Table(title=f"{model.name}: {len(names)} output(s)", title_justify="left")
    for column in ("output", "shape", "dtype"):
        table.add_column(column, no_wrap=True)
    table.add_column("values", overflow="fold")
    for name, value in zip(names, results):
        # Text cells: names and values are data, never rich markup.
        table.add_row(*(Text(cell) for cell in (name, *summarize(value))))
    console = Console(highlight=False)
    console.print(table)

    if output is not None:
        arrays = {name: np.asarray(value) for name, value in zip(names, results) if isinstance(value, np.ndarray)}
        skipped = sorted(set(names) - set(arrays))
        with open(output, "wb") as handle:  # a file object stops numpy from appending ".npz" to the name
            np.savez(handle, **arrays)
        note = f" (skipped non-tensor outputs {skipped})" if skipped else ""
        console.print(f"saved {len(arrays)} output(s) to {output}{note}", markup=False)
