"""Architectures of the sample models (untrained; weights come from ``sample_models.build``).

Every module here takes exactly the ``x`` of its data splits as input and exports with
``torch.onnx.export(..., dynamo=True)`` and a dynamic batch axis to plain ONNX operators.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

DIGIT_CLASSES = 10
CANCER_FEATURES = 30


def digits_cnn() -> nn.Module:
    """Small CNN for (1, 8, 8) digits: three 3x3 convs, two max-pools, one linear (~60k params)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 8x8 -> 4x4
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 4x4 -> 2x2
        nn.Flatten(),
        nn.Linear(64 * 2 * 2, DIGIT_CLASSES),
    )


def resnet18() -> nn.Module:
    """``torchvision.models.resnet18`` with 10 classes, for (3, 64, 64) upsampled digits."""
    return torchvision.models.resnet18(num_classes=DIGIT_CLASSES)


def mobilenet_v3() -> nn.Module:
    """``torchvision.models.mobilenet_v3_small`` with 10 classes, for (3, 64, 64) digits."""
    return torchvision.models.mobilenet_v3_small(num_classes=DIGIT_CLASSES)


class Standardize(nn.Module):
    """``(x - mean) / std`` with the statistics as buffers (saved with the weights)."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """Set the statistics from the (N, n_features) training inputs ``x``."""
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def cancer_mlp() -> nn.Module:
    """MLP for the 30 raw breast-cancer features: standardize, 30 -> 64 -> 32 -> 2."""
    return nn.Sequential(
        Standardize(CANCER_FEATURES),
        nn.Linear(CANCER_FEATURES, 64),
        nn.ReLU(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, 2),
    )


class Attention(nn.Module):
    """Multi-head self-attention written out with ``nn.Linear``, MatMul and Softmax.

    Unlike ``nn.MultiheadAttention`` it has no fused fast path, so it exports to plain ONNX ops
    whose Linear layers quantization and pruning tools can see.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"`dim % heads == 0` must hold, but got dim={dim}, heads={heads}")
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        """(B, T, dim) -> (B, heads, T, dim // heads)."""
        return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        attn = torch.softmax(q @ k.transpose(-2, -1) * self.scale, dim=-1)
        return self.out((attn @ v).transpose(1, 2).flatten(2))


class EncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DigitsViT(nn.Module):
    """ViT for (1, 8, 8) digits: 2x2 patches (16 tokens) + cls token, pre-norm encoder layers."""

    def __init__(
        self, dim: int = 64, depth: int = 2, heads: int = 4, mlp_dim: int = 128, patch: int = 2
    ) -> None:
        super().__init__()
        tokens = (8 // patch) ** 2
        self.patch_embed = nn.Conv2d(1, dim, patch, stride=patch)  # = Linear on each patch
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.layers = nn.Sequential(*(EncoderLayer(dim, heads, mlp_dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, DIGIT_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, 16, dim)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1) + self.pos
        return self.head(self.norm(self.layers(t))[:, 0])


def digits_vit() -> nn.Module:
    """The sample ViT: dim 64, 2 layers, 4 heads, MLP 128 (~70k params)."""
    return DigitsViT()
