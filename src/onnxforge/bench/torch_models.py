"""Plain-PyTorch benchmark models (no torchvision) and their cached ONNX exports.

The architectures follow the reference designs (ResNet-18, MobileNetV2, a BERT-base-like encoder, a
GPT-2-like decoder, a stacked ``nn.LSTM``) at the sizes the benchmark needs. Weights are random with a
fixed seed: latency does not depend on trained values, and matching ORT needs only determinism.

torch is imported inside the functions that need it, so the benchmark suite (and its listing of model
names and input specs) works in an environment without torch; only :func:`export` requires it.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

OPSET = 17
SEED = 0
# Bump when an architecture changes so stale exports in the cache are not reused.
EXPORT_VERSION = 1

VOCAB = 4096
SEQ = 128
HIDDEN = 512
HEADS = 8
FFN = 2048
LAYERS = 6


@dataclass(frozen=True)
class InputSpec:
    """One model input: name, shape, and whether it holds token ids (int64) or floats."""

    name: str
    shape: tuple[int, ...]
    token_ids: bool = False

    def make(self, rng: np.random.Generator) -> np.ndarray:
        if self.token_ids:
            return rng.integers(0, VOCAB, size=self.shape, dtype=np.int64)
        return rng.standard_normal(self.shape).astype(np.float32)


@dataclass(frozen=True)
class TorchModelSpec:
    """What :func:`export` builds: an architecture key, its keyword arguments and its inputs."""

    arch: str
    inputs: tuple[InputSpec, ...]


def _image(batch: int) -> tuple[InputSpec, ...]:
    return (InputSpec("input", (batch, 3, 224, 224)),)


def _tokens(batch: int) -> tuple[InputSpec, ...]:
    return (InputSpec("input_ids", (batch, SEQ), token_ids=True),)


TORCH_MODELS: dict[str, TorchModelSpec] = {
    "resnet18_b1": TorchModelSpec("resnet18", _image(1)),
    "resnet18_b8": TorchModelSpec("resnet18", _image(8)),
    "mobilenetv2_b1": TorchModelSpec("mobilenetv2", _image(1)),
    "bert_b1": TorchModelSpec("bert", _tokens(1)),
    "bert_b4": TorchModelSpec("bert", _tokens(4)),
    "gpt_b1": TorchModelSpec("gpt", _tokens(1)),
    "lstm_b8": TorchModelSpec("lstm", (InputSpec("input", (8, 100, 128)),)),
}


def make_inputs(name: str) -> dict[str, np.ndarray]:
    """Deterministic feeds for a torch model (numpy only, so the suite can build them without torch)."""
    rng = np.random.default_rng(SEED)
    return {spec.name: spec.make(rng) for spec in TORCH_MODELS[name].inputs}


def _build_modules() -> dict[str, Any]:
    """Define the nn.Module classes; a function so that importing this module does not import torch."""
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + (x if self.down is None else self.down(x)))

    class ResNet18(nn.Module):
        def __init__(self, classes: int = 1000) -> None:
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
            )
            blocks, cin = [], 64
            for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
                blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
                cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(512, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.blocks(self.stem(x))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    def conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int = 1, act: bool = True) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)]
        layers.append(nn.BatchNorm2d(cout))
        if act:
            layers.append(nn.ReLU6())
        return nn.Sequential(*layers)

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = cin * expand
            layers = [conv_bn(cin, hidden, 1, 1)] if expand != 1 else []
            layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, 1, act=False)]
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.body(x) if self.residual else self.body(x)

    class MobileNetV2(nn.Module):
        # (expansion, channels, repeats, first stride) from the paper's Table 2.
        SETTINGS = [
            (1, 16, 1, 1),
            (6, 24, 2, 2),
            (6, 32, 3, 2),
            (6, 64, 4, 2),
            (6, 96, 3, 1),
            (6, 160, 3, 2),
            (6, 320, 1, 1),
        ]

        def __init__(self, classes: int = 1000) -> None:
            super().__init__()
            layers: list[nn.Module] = [conv_bn(3, 32, 3, 2)]
            cin = 32
            for expand, cout, repeats, stride in self.SETTINGS:
                for i in range(repeats):
                    layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                    cin = cout
            layers.append(conv_bn(cin, 1280, 1, 1))
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Linear(1280, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
            return self.classifier(torch.flatten(x, 1))

    class Attention(nn.Module):
        def __init__(self, causal: bool) -> None:
            super().__init__()
            self.qkv = nn.Linear(HIDDEN, 3 * HIDDEN)
            self.proj = nn.Linear(HIDDEN, HIDDEN)
            self.causal = causal
            self.register_buffer("mask", torch.triu(torch.ones(SEQ, SEQ, dtype=torch.bool), 1), persistent=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            batch, seq, _ = x.shape
            q, k, v = self.qkv(x).view(batch, seq, 3, HEADS, HIDDEN // HEADS).permute(2, 0, 3, 1, 4)
            scores = q @ k.transpose(-2, -1) * (HIDDEN // HEADS) ** -0.5
            if self.causal:
                scores = scores.masked_fill(self.mask[:seq, :seq], float("-inf"))
            out = torch.softmax(scores, dim=-1) @ v
            return self.proj(out.transpose(1, 2).reshape(batch, seq, HIDDEN))

    class TransformerLayer(nn.Module):
        """Post-LN (BERT) when not causal, pre-LN (GPT-2) when causal."""

        def __init__(self, causal: bool) -> None:
            super().__init__()
            self.attn = Attention(causal)
            self.ln1, self.ln2 = nn.LayerNorm(HIDDEN), nn.LayerNorm(HIDDEN)
            self.ffn = nn.Sequential(nn.Linear(HIDDEN, FFN), nn.GELU(), nn.Linear(FFN, HIDDEN))
            self.pre_ln = causal

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.pre_ln:
                x = x + self.attn(self.ln1(x))
                return x + self.ffn(self.ln2(x))
            x = self.ln1(x + self.attn(x))
            return self.ln2(x + self.ffn(x))

    class Transformer(nn.Module):
        def __init__(self, causal: bool) -> None:
            super().__init__()
            self.tokens = nn.Embedding(VOCAB, HIDDEN)
            self.positions = nn.Parameter(torch.randn(1, SEQ, HIDDEN) * 0.02)
            self.layers = nn.Sequential(*[TransformerLayer(causal) for _ in range(LAYERS)])
            self.norm = nn.LayerNorm(HIDDEN)
            # GPT ends in an LM head over the vocabulary; BERT returns the last hidden state.
            self.head = nn.Linear(HIDDEN, VOCAB, bias=False) if causal else None

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            x = self.norm(self.layers(self.tokens(ids) + self.positions[:, : ids.shape[1]]))
            return x if self.head is None else self.head(x)

    class StackedLSTM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(128, 256, num_layers=2, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lstm(x)[0]

    return {
        "resnet18": ResNet18,
        "mobilenetv2": MobileNetV2,
        "bert": lambda: Transformer(causal=False),
        "gpt": lambda: Transformer(causal=True),
        "lstm": StackedLSTM,
    }


def build_module(name: str) -> Any:
    """The eval-mode ``nn.Module`` for ``name``, randomly initialised from :data:`SEED`."""
    import torch

    spec = TORCH_MODELS[name]
    torch.manual_seed(SEED)
    module = _build_modules()[spec.arch]()
    # Give BatchNorm non-trivial running statistics, else it folds to a no-op and flatters the engines.
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, torch.nn.BatchNorm2d):
                sub.running_mean.uniform_(-0.1, 0.1)
                sub.running_var.uniform_(0.5, 1.5)
    return module.eval()


def cache_path(name: str, cache_dir: Path) -> Path:
    return Path(cache_dir) / f"{name}-opset{OPSET}-v{EXPORT_VERSION}.onnx"


def export(name: str, cache_dir: Path) -> Path:
    """Export ``name`` to ONNX (opset 17) once, and return the cached file's path."""
    if name not in TORCH_MODELS:
        raise KeyError(f"unknown torch model '{name}'; known: {', '.join(TORCH_MODELS)}")
    target = cache_path(name, cache_dir)
    if target.exists():
        return target
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    module = build_module(name)
    feeds = make_inputs(name)
    args = tuple(torch.from_numpy(array) for array in feeds.values())
    # Write next to the target and rename, so an interrupted export never leaves a truncated cache entry.
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx", dir=target.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(
                    module,
                    args,
                    tmp_name,
                    dynamo=False,
                    opset_version=OPSET,
                    input_names=list(feeds),
                    output_names=["output"],
                    do_constant_folding=True,
                )
            except Exception:  # the TorchScript exporter is deprecated; fall back to the dynamo one
                torch.onnx.export(
                    module,
                    args,
                    tmp_name,
                    dynamo=True,
                    opset_version=OPSET,
                    input_names=list(feeds),
                    output_names=["output"],
                    external_data=False,
                )
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target
