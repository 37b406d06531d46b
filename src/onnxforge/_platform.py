"""Process-level tuning that must happen before NumPy is imported.

OpenBLAS picks its sgemm kernels from the CPU it detects. Some OpenBLAS builds (NumPy's wheels included)
do not recognise newer AVX-512 CPUs, AMD Zen 4/5 among them, and fall back to the Haswell (AVX2) kernels
at about half the speed; ``OPENBLAS_CORETYPE=SKYLAKEX`` selects the AVX-512 kernels (measured here:
105 -> 203 GFLOP/s single-threaded on a 3136x2304x256 sgemm). The variable is only read when OpenBLAS
loads, i.e. when NumPy is first imported, so this runs from ``onnxforge/__init__`` before anything imports
NumPy. It is set only when the CPU reports the AVX-512 subsets those kernels use, never overrides a value
the user set, and ``ONNXFORGE_NO_BLAS_TUNING=1`` turns it off.
"""

from __future__ import annotations

import os
import sys

_SKYLAKEX_FLAGS = {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"}


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def tune_openblas() -> str | None:
    """Set ``OPENBLAS_CORETYPE`` for AVX-512 CPUs when NumPy is not imported yet; returns what was set."""
    if os.environ.get("ONNXFORGE_NO_BLAS_TUNING") == "1" or "OPENBLAS_CORETYPE" in os.environ:
        return None
    if "numpy" in sys.modules:  # too late: OpenBLAS has already chosen its kernels
        return None
    if _SKYLAKEX_FLAGS <= _cpu_flags():
        os.environ["OPENBLAS_CORETYPE"] = "SKYLAKEX"
        return "SKYLAKEX"
    return None
