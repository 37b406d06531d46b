"""Train the small CNN bundled as ``onnxforge/data/digits_cnn.onnx`` and export it with its test split.

Plain PyTorch on scikit-learn's 8x8 ``load_digits``; fixed seeds and a stratified split, so rerunning
reproduces the same split (the weights may differ by a few ULPs across BLAS builds). Needs the ``dev``
extras (torch, scikit-learn); the ``onnxforge demo`` that uses its outputs needs neither.

    python examples/train_digits.py [--out-dir src/onnxforge/data] [--epochs 60]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import onnx
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

SEED = 0
TEST_SIZE = 360
# load_digits pixels are integers 0..16; a fixed scale keeps the normalisation trivially reproducible.
PIXEL_MAX = 16.0
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "onnxforge" / "data"


class DigitsCNN(nn.Module):
    """Two conv blocks and a linear head: 8x8 -> 4x4 -> 2x2 -> 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 2 * 2, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images as float32 [N,1,8,8] in [0, 1], labels int64; stratified so every digit is in the test split."""
    digits = load_digits()
    images = (digits.images.astype(np.float32) / PIXEL_MAX)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=TEST_SIZE, stratify=labels, random_state=SEED
    )
    return x_train, x_test, y_train, y_test


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int = 64) -> None:
    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(inputs), batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad()
            loss_fn(model(inputs[idx]), targets[idx]).backward()
            optimizer.step()
        scheduler.step()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with torch.no_grad():
        predictions = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float((predictions == y).mean())


def _export_dynamo(model: nn.Module, path: Path, example: torch.Tensor) -> None:
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
        opset_version=17,
        external_data=False,
        dynamo=True,
    )


def _export_legacy(model: nn.Module, path: Path, example: torch.Tensor) -> None:
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )


def export(model: nn.Module, path: Path) -> None:
    model.eval()
    example = torch.zeros(2, 1, 8, 8)
    try:
        _export_dynamo(model, path, example)
    except ImportError as exc:
        # The dynamo exporter needs onnxscript, which the dev extras do not pin; the TorchScript one does not.
        print(f"dynamo exporter unavailable ({exc}); using the TorchScript exporter")
        _export_legacy(model, path, example)
    proto = onnx.load(str(path))
    proto.producer_name = "onnxforge examples/train_digits.py"
    proto.doc_string = (
        "Small CNN on scikit-learn load_digits (8x8, pixels / 16); input [batch,1,8,8] -> logits [batch,10]"
    )
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))  # one file: the weights are far below the 2 GB external-data threshold
    if [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim[:1]] != ["batch"]:
        raise SystemExit(f"exported input has no dynamic 'batch' axis: {proto.graph.input[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()

    seed_everything(SEED)
    torch.set_num_threads(1)  # single-threaded reductions keep reruns bit-identical
    x_train, x_test, y_train, y_test = load_split()
    model = DigitsCNN()
    train(model, x_train, y_train, args.epochs)
    test_acc = accuracy(model, x_test, y_test)
    print(
        f"train accuracy {accuracy(model, x_train, y_train):.4f}, test accuracy {test_acc:.4f} on {len(y_test)} samples"
    )
    if test_acc < 0.97:
        raise SystemExit(f"test accuracy {test_acc:.4f} is below the 0.97 the demo promises; not exporting")

    args.out_dir.mkdir(parents=True, exist_ok=True)
    model_path = args.out_dir / "digits_cnn.onnx"
    export(model, model_path)
    np.savez_compressed(args.out_dir / "digits_test.npz", images=x_test, labels=y_test)
    print(f"wrote {model_path} ({model_path.stat().st_size} bytes) and {args.out_dir / 'digits_test.npz'}")


if __name__ == "__main__":
    main()
