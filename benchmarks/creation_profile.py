"""Session creation time, onnxforge vs onnxruntime, for every model of the benchmark suite.

Both engines build ``InferenceSession(path)`` with 1 intra-op thread and otherwise default options,
alternating (the engine order flips every round) with a short pause in between, so background load on a
shared machine hits both alike. Prints the median creation time of each engine and their ratio.

    .venv/bin/python benchmarks/creation_profile.py                 # every suite model, 5 rounds
    .venv/bin/python benchmarks/creation_profile.py shufflenet bert_b1 --rounds 9
    .venv/bin/python benchmarks/creation_profile.py --engine onnxforge --repeat 3 shufflenet   # for pyinstrument

Torch models must be exported first (``python -m onnxforge.bench --quick --no-rss --no-reference``); models
whose file is missing are skipped with a note.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from onnxforge.bench import suite, torch_models
from onnxforge.bench.measure import make_session


def model_paths(names: list[str], cache_dir: Path) -> dict[str, Path]:
    """Suite model name -> file, without exporting anything (the probe is written, it is tiny)."""
    paths: dict[str, Path] = {}
    for spec in suite.select(names or None):
        if spec.source == "onnx-light":
            # The suite's copy with random weights (what make bench times), not onnx's constant fills.
            paths[spec.name] = suite.randomized_light_model(spec.name, cache_dir)
        elif spec.source == "torch":
            path = torch_models.cache_path(spec.name, cache_dir)
            if path.is_file():
                paths[spec.name] = path
            else:
                print(f"{spec.name}: not exported yet ({path}), skipped")
        else:
            paths[spec.name] = spec.resolve(cache_dir).path
    return paths


def creation_time(engine: str, path: Path) -> float:
    start = time.perf_counter()
    make_session(engine, path, threads=1)
    return time.perf_counter() - start


def compare(paths: dict[str, Path], rounds: int) -> None:
    print(f"{'model':<16}{'onnxforge ms':>14}{'ort ms':>10}{'ratio':>8}")
    for name, path in paths.items():
        times: dict[str, list[float]] = {"onnxforge": [], "ort": []}
        creation_time("onnxforge", path)  # warm the file cache and imports for both
        creation_time("ort", path)
        for round_index in range(rounds):
            order = ("onnxforge", "ort") if round_index % 2 == 0 else ("ort", "onnxforge")
            for engine in order:
                times[engine].append(creation_time(engine, path))
                time.sleep(0.2)
        ours, theirs = statistics.median(times["onnxforge"]), statistics.median(times["ort"])
        print(f"{name:<16}{ours * 1e3:>14.1f}{theirs * 1e3:>10.1f}{ours / theirs:>8.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="suite model names (default: all)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cache-dir", type=Path, default=suite.default_cache_dir())
    parser.add_argument("--engine", choices=("onnxforge", "ort"), help="only build sessions of this engine (profiling)")
    parser.add_argument("--repeat", type=int, default=3, help="sessions per model with --engine")
    args = parser.parse_args()
    paths = model_paths(args.models, args.cache_dir)
    if args.engine:
        for name, path in paths.items():
            samples = [creation_time(args.engine, path) for _ in range(args.repeat)]
            print(f"{name}: {args.engine} median {statistics.median(samples) * 1e3:.1f} ms")
    else:
        compare(paths, args.rounds)


if __name__ == "__main__":
    main()
