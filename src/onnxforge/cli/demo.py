"""``onnxforge demo``: check and run the bundled digits CNN, and race it against ORT and onnx.reference.

The model and its held-out test split ship inside the package (``onnxforge/data``, made by
``examples/train_digits.py``), so the demo needs neither torch nor scikit-learn. onnxruntime and
``onnx.reference`` are optional: each joins the comparison only if it imports and loads the model.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated

import numpy as np
import onnx
import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text
from threadpoolctl import threadpool_limits

import onnxforge
from onnxforge._errors import Fail

MODEL_FILE = "digits_cnn.onnx"
DATA_FILE = "digits_test.npz"
MIN_ACCURACY = 0.95
BLOCK_RUNS = 5  # full-batch runs per engine before handing over to the next engine
BLOCK_SAMPLES = 25  # batch-1 runs per engine per block
# ORT's pool threads keep spinning for a while after a run; a pause lets them park before the next engine.
BLOCK_PAUSE_S = 0.05


@dataclass
class Engine:
    name: str
    version: str
    infer: Callable[[np.ndarray], np.ndarray]
    load_ms: float
    logits: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    batch_ms: list[float] = field(default_factory=list)
    single_ms: list[float] = field(default_factory=list)


@contextlib.contextmanager
def bundled_files() -> Iterator[tuple[Path, Path]]:
    """Real paths of the bundled model and test split, even when the package is installed zipped."""
    data = resources.files("onnxforge").joinpath("data")
    with resources.as_file(data / MODEL_FILE) as model, resources.as_file(data / DATA_FILE) as split:
        yield Path(model), Path(split)


def _timed_load(name: str, version: str, load: Callable[[], Callable[[np.ndarray], np.ndarray]]) -> Engine:
    start = time.perf_counter()
    infer = load()
    return Engine(name, version, infer, (time.perf_counter() - start) * 1e3)


def onnxforge_engine(model: Path) -> Engine:
    def load() -> Callable[[np.ndarray], np.ndarray]:
        options = onnxforge.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxforge.InferenceSession(model, sess_options=options)
        return lambda x: session.run(None, {"input": x})[0]

    return _timed_load("onnxforge", onnxforge.__version__, load)


def optional_engines(model: Path, notes: list[str]) -> list[Engine]:
    """onnxruntime and onnx.reference, each if importable and able to load the model; why not goes to ``notes``."""
    engines: list[Engine] = []
    try:
        import onnxruntime as ort
    except ImportError:
        notes.append("onnxruntime is not installed; `pip install onnxruntime` to compare")
    else:
        if ort.InferenceSession is onnxforge.InferenceSession:
            notes.append("`onnxruntime` is onnxforge's own shim in this process (under `onnxforge exec`?); skipped")
        else:

            def load_ort() -> Callable[[np.ndarray], np.ndarray]:
                options = ort.SessionOptions()
                options.intra_op_num_threads = 1
                options.inter_op_num_threads = 1
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
                return lambda x: session.run(None, {"input": x})[0]

            try:
                engines.append(_timed_load("onnxruntime", ort.__version__, load_ort))
            except Exception as exc:  # noqa: BLE001 - an optional comparison must not sink the demo
                notes.append(f"onnxruntime could not load the model: {type(exc).__name__}: {exc}")
    try:
        from onnx.reference import ReferenceEvaluator
    except ImportError:
        notes.append("onnx.reference is not available in this onnx build")
    else:

        def load_reference() -> Callable[[np.ndarray], np.ndarray]:
            evaluator = ReferenceEvaluator(str(model))
            return lambda x: evaluator.run(None, {"input": x})[0]

        try:
            engines.append(_timed_load("onnx.reference", onnx.__version__, load_reference))
        except Exception as exc:  # noqa: BLE001 - as above
            notes.append(f"onnx.reference could not load the model: {type(exc).__name__}: {exc}")
    return engines


def _rotated(engines: list[Engine], block: int) -> list[Engine]:
    # Who runs first in a block gets the coolest caches; rotate so no engine always does.
    shift = block % len(engines)
    return engines[shift:] + engines[:shift]


def _time_ms(infer: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> float:
    start = time.perf_counter()
    infer(x)
    return (time.perf_counter() - start) * 1e3


def benchmark(engines: list[Engine], images: np.ndarray, repeat: int, samples: int) -> None:
    """Alternate engines in short blocks with pauses, so none is timed while another's threads still spin."""
    for engine in engines:  # warm-up: first-run allocations and lazy setup stay out of the numbers
        engine.infer(images[:1])
    for block in range(-(-repeat // BLOCK_RUNS)):
        runs = min(BLOCK_RUNS, repeat - block * BLOCK_RUNS)
        for engine in _rotated(engines, block):
            engine.batch_ms.extend(_time_ms(engine.infer, images) for _ in range(runs))
            time.sleep(BLOCK_PAUSE_S)
    singles = images[: min(samples, len(images))]
    for block, start in enumerate(range(0, len(singles), BLOCK_SAMPLES)):
        chunk = singles[start : start + BLOCK_SAMPLES]
        for engine in _rotated(engines, block):
            engine.single_ms.extend(_time_ms(engine.infer, chunk[i : i + 1]) for i in range(len(chunk)))
            time.sleep(BLOCK_PAUSE_S)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


def predictions_table(predicted: np.ndarray, labels: np.ndarray, count: int) -> Table:
    table = Table(title=f"First {count} test digits", title_justify="left", show_header=False)
    table.add_column("", style="bold")
    for _ in range(count):
        table.add_column("", justify="right")
    table.add_row("label", *(str(v) for v in labels[:count]))
    table.add_row(
        "onnxforge",
        *(Text(str(p), style="green" if p == y else "bold red") for p, y in zip(predicted[:count], labels[:count])),
    )
    return table


def comparison_table(engines: list[Engine], labels: np.ndarray, batch: int) -> Table:
    table = Table(
        title="Engines side by side (1 intra-op thread each; median latencies)",
        title_justify="left",
        box=box.SIMPLE_HEAD,  # no vertical rules: seven columns fit an 80-column terminal
    )
    headers = (
        "engine",
        "version",
        "accuracy",
        "load\nms",
        f"batch {batch}\nms",
        "batch 1\nms",
        "max |Δ|\nvs ours",
    )
    for column in headers:
        table.add_column(column, justify="left" if column in ("engine", "version") else "right", no_wrap=True)
    ours = engines[0].logits.astype(np.float64)
    for engine in engines:
        diff = float(np.max(np.abs(engine.logits - ours)))
        table.add_row(
            engine.name,
            engine.version,
            f"{accuracy(engine.logits, labels):.2%}",
            f"{engine.load_ms:.1f}",
            f"{statistics.median(engine.batch_ms):.2f}",
            f"{statistics.median(engine.single_ms):.3f}",
            "-" if engine is engines[0] else f"{diff:.2e}",
        )
    return table


def demo(
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="Timed full-batch runs per engine.")] = 10,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Timed batch-1 runs per engine.")] = 100,
    compare: Annotated[
        bool, typer.Option("--compare/--no-compare", help="Also time onnxruntime and onnx.reference if installed.")
    ] = True,
) -> None:
    """Check the bundled digits CNN, run its test split through onnxforge and compare with other engines."""
    console = Console(highlight=False)
    with bundled_files() as (model_path, data_path):
        onnx.checker.check_model(str(model_path), full_check=True)
        console.print(f"onnx.checker: {MODEL_FILE} is a valid model", markup=False)
        with np.load(data_path) as split:
            images, labels = split["images"], split["labels"]
        notes: list[str] = []
        # onnx.reference has no thread option and would give NumPy's BLAS every core; hold all engines to one.
        with threadpool_limits(limits=1, user_api="blas"):
            engines = [onnxforge_engine(model_path)]
            if compare:
                engines += optional_engines(model_path, notes)
            for engine in engines:
                engine.logits = np.asarray(engine.infer(images))
            benchmark(engines, images, repeat, samples)

    ours = engines[0]
    score = accuracy(ours.logits, labels)
    console.print(f"onnxforge accuracy on {len(labels)} held-out digits: {score:.2%}", style="bold", markup=False)
    console.print(predictions_table(ours.logits.argmax(axis=1), labels, 12))
    console.print(
        f"onnxforge latency: batch {len(images)} median {statistics.median(ours.batch_ms):.2f} ms "
        f"over {len(ours.batch_ms)} runs; batch 1 median {statistics.median(ours.single_ms):.3f} ms "
        f"over {len(ours.single_ms)} samples",
        markup=False,
        soft_wrap=True,
    )
    if len(engines) > 1:
        console.print(comparison_table(engines, labels, len(images)))
    for note in notes:
        console.print(f"note: {note}", style="dim", markup=False, soft_wrap=True)
    if score < MIN_ACCURACY:
        raise Fail(f"onnxforge accuracy {score:.2%} is below {MIN_ACCURACY:.0%}: a kernel computes something wrong")
