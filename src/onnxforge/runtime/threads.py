"""Per-run BLAS thread limits through threadpoolctl, so ``intra_op_num_threads`` really takes effect."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from threadpoolctl import ThreadpoolController

_controller: ThreadpoolController | None = None
_controller_lock = threading.Lock()


def _get_controller() -> ThreadpoolController:
    # Building the controller scans the loaded libraries (~ms); do it once per process.
    global _controller
    with _controller_lock:
        if _controller is None:
            _controller = ThreadpoolController()
        return _controller


@contextlib.contextmanager
def blas_threads(count: int) -> Iterator[None]:
    """Limit BLAS to ``count`` threads inside the block; ``0`` (ORT's default) leaves BLAS as it is."""
    if count <= 0:
        yield
        return
    with _get_controller().limit(limits=count, user_api="blas"):
        yield


def current_blas_threads() -> int:
    """The smallest thread count any loaded BLAS currently uses (for tests and reports)."""
    infos = [info["num_threads"] for info in ThreadpoolController().info() if info.get("user_api") == "blas"]
    return min(infos) if infos else 1
