"""Train the sample models deterministically and write their safetensors weights.

Usage: ``python -m sample_models.train [NAME ...]`` (default: all). Only the ``train`` split is
used for fitting; ``test`` is evaluated once at the end and printed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import sample_models
from optim.sources import Split
from optim.train import random_shift, recalibrate_bn_
from sample_models import SAMPLES, TrainConfig
from sample_models.models import Standardize

TRAIN_THREADS = 2
"""Fixed intra-op threads while training: float sums depend on it, so results do too."""
SEED = 0


@contextlib.contextmanager
def deterministic(seed: int = SEED) -> Iterator[None]:
    """Seed torch, fix its threads and ask for deterministic algorithms; restore all on exit."""
    threads = torch.get_num_threads()
    det, warn_only = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    rng = torch.get_rng_state()
    torch.set_num_threads(TRAIN_THREADS)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.set_rng_state(rng)


@torch.no_grad()
def predict(model: torch.nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class predictions of ``model`` (put in eval mode) for inputs ``x``."""
    model.eval()
    xt = torch.tensor(x)
    return torch.cat(
        [model(xt[i : i + batch_size]).argmax(1) for i in range(0, len(xt), batch_size)]
    ).numpy()


def accuracy(model: torch.nn.Module, split: Split) -> float:
    """Top-1 accuracy of ``model`` on ``split``."""
    return float((predict(model, split.x) == split.y).mean())


def fit(model: torch.nn.Module, train: Split, cfg: TrainConfig, desc: str = "") -> None:
    """Train ``model`` on ``train`` with ``cfg`` (AdamW, one-cycle lr), progress bar on stderr."""
    x, y = torch.tensor(train.x), torch.tensor(train.y)
    gen = torch.Generator().manual_seed(SEED)
    steps = cfg.epochs * -(-len(x) // cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    model.train()
    with tqdm(total=steps, desc=desc, file=sys.stderr, leave=False) as bar:
        for _ in range(cfg.epochs):
            for idx in torch.randperm(len(x), generator=gen).split(cfg.batch_size):
                xb = random_shift(x[idx], cfg.shift, gen)
                loss = F.cross_entropy(model(xb), y[idx], label_smoothing=cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    if cfg.recalibrate_bn:
        recalibrate_bn_(model, x)
    model.eval()


def train_model(name: str) -> tuple[torch.nn.Module, float]:
    """Train sample ``name`` from scratch; return it (eval mode) and its test accuracy."""
    spec = SAMPLES[name]
    splits = sample_models.load_splits(name)
    with deterministic():
        model = spec.builder()
        for m in model.modules():  # input standardization: train-split statistics
            if isinstance(m, Standardize):
                m.fit(torch.tensor(splits["train"].x))
        fit(model, splits["train"], spec.train, desc=name)
        return model, accuracy(model, splits["test"])


def save_weights(model: torch.nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """Write ``model``'s state dict to ``path`` atomically (a reader never sees half a file)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; weights are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock on ``path`` (POSIX ``flock``; no lock where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: concurrent trainings both run; the writes are atomic
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _train_and_save(name: str, path: Path) -> float:
    model, acc = train_model(name)
    meta = {"sample": name, "test_accuracy": f"{acc:.4f}", "torch": torch.__version__}
    save_weights(model, path, meta)
    return acc


def train_and_save(name: str) -> float:
    """Train sample ``name``, write its weights to ``weights_path(name)``; return test accuracy.

    Weights trained on first use are locked meanwhile, so that ``build`` in another process
    waits instead of training too (committed weights are never trained by ``build``).
    """
    if name not in SAMPLES:
        raise ValueError(f"unknown sample model {name!r}; `name` must be one of {sorted(SAMPLES)}")
    path = sample_models.weights_path(name)
    if SAMPLES[name].committed:
        return _train_and_save(name, path)
    with _file_lock(_lock_path(path)):
        return _train_and_save(name, path)


def ensure_trained(name: str) -> Path:
    """Train ``name`` unless its weights exist (one process trains, the others wait)."""
    path = sample_models.weights_path(name)
    with _file_lock(_lock_path(path)):
        if not path.is_file():
            print(
                f"training sample model {name!r} on first use (a few minutes) -> {path}",
                file=sys.stderr,
            )
            _train_and_save(name, path)
    return path


def main(argv: list[str] | None = None) -> None:
    """CLI: train the named sample models (default: all) and print their test accuracy."""
    parser = argparse.ArgumentParser(prog="python -m sample_models.train", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {list(SAMPLES)}")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in SAMPLES]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; NAME must be one of {list(SAMPLES)}")
    for name in args.names or list(SAMPLES):
        start = time.perf_counter()
        acc = train_and_save(name)
        print(
            f"{name}: test accuracy {acc:.4f} ({time.perf_counter() - start:.0f} s) "
            f"-> {sample_models.weights_path(name)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
