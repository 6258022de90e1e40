"""A small training loop shared by the torch-stage techniques (fine-tune, distill, QAT).

Only the source's ``train`` split is read. A seeded permutation holds out its last 15 % as a
validation split, which picks the epoch to keep (early stopping), so the ``test`` split never
influences training or selection. Runs are deterministic given the seed (one intra-op thread,
seeded initialization and shuffling) and fast: the small samples fine-tune in about a second.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from optim.sources import ModelSource, Split

VAL_FRACTION = 0.15  # ~185 digits / ~60 cancer rows: enough to rank epochs, little lost to fit
BATCH_SIZE = 64  # what the samples were trained with: ~17 steps per digits epoch

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def train_val_split(source: ModelSource, seed: int = 0) -> tuple[Split, Split]:
    """(fit, validation): the ``train`` split with its last 15 % by a seeded permutation held out.

    Example:
        >>> fit_part, val = train_val_split(sample_source("digits_cnn"))  # doctest: +SKIP
        >>> len(fit_part), len(val)  # doctest: +SKIP
        (1051, 186)
    """
    train = source.splits.get("train")
    if train is None or train.y is None:
        raise ValueError(
            f"training needs a labelled 'train' split, but source {source.name!r} has "
            f"splits {sorted(source.splits)}" + ("" if train is None else " (train has no labels)")
        )
    perm = np.random.default_rng(seed).permutation(len(train))
    n_val = max(1, round(VAL_FRACTION * len(train)))
    fit_idx, val_idx = np.sort(perm[:-n_val]), np.sort(perm[-n_val:])
    return Split(train.x[fit_idx], train.y[fit_idx]), Split(train.x[val_idx], train.y[val_idx])


def kd_loss(
    logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    y: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Knowledge-distillation loss ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE``.

    ``T^2`` keeps the soft term's gradients on the scale of the hard term's (Hinton et al. 2015).
    """
    t = temperature
    soft = F.kl_div(
        F.log_softmax(logits / t, dim=-1),
        F.log_softmax(teacher_logits / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * t * t * soft + (1 - alpha) * F.cross_entropy(logits, y)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch and use one intra-op thread (float sums depend on it); restore both on exit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(threads)


def random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image of ``x`` (N, C, H, W) by up to ``max_shift`` pixels, zero-filled."""
    if max_shift <= 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (len(x), 2), generator=gen).tolist()
    return torch.stack(
        [padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)]
    )


@torch.no_grad()
def recalibrate_bn_(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 256) -> None:
    """Recompute every BatchNorm's running statistics as exact averages over ``x``, in place.

    Running averages lag far behind the weights in a few hundred steps (MobileNetV3's momentum
    is 0.01), so a model validated on them looks untrained; exact statistics fix that."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    was_training, momenta = model.training, [bn.momentum for bn in bns]
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: every batch weighs the same
        bn.train()
    for i in range(0, len(x), batch_size):
        model(x[i : i + batch_size])
    for bn, momentum in zip(bns, momenta, strict=True):
        bn.momentum = momentum
    model.train(was_training)


@torch.no_grad()
def logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """``model``'s outputs for every row of ``x``, in eval mode and in batches."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def fit(
    model: torch.nn.Module,
    source: ModelSource,
    epochs: int,
    lr: float,
    seed: int = 0,
    loss_fn: LossFn | None = None,
    teacher: torch.nn.Module | None = None,
    temperature: float = 4.0,
    alpha: float = 0.7,
    patience: int | None = None,
    weight_decay: float = 0.0,
    augment: bool = False,
) -> torch.nn.Module:
    """A trained copy of ``model`` (eval mode): AdamW with a cosine schedule on the train split.

    The state kept is the one with the best validation accuracy (ties: lower validation loss),
    the starting weights included, so a fine-tune never ends worse on validation than it began.
    With ``augment``, images are randomly shifted as the source's model was trained
    (``source.train_shift``): what training from scratch needs; a short recovery from trained
    weights does without.
    BatchNorm and dropout run in train mode while fitting, eval mode when validating, with
    BatchNorm statistics recomputed exactly on the fit part before every validation.

    Args:
        model: the model to train; it is not modified.
        source: where the ``train`` split comes from.
        epochs: at most this many passes over the fit part of the train split.
        lr: peak learning rate (cosine-annealed to zero over ``epochs``).
        seed: seeds the validation split, initialization noise and batch order.
        loss_fn: ``loss_fn(logits, y)``; default cross-entropy (not with ``teacher``).
        teacher: distill from this model's soft targets with :func:`kd_loss`.
        temperature, alpha: of :func:`kd_loss`.
        patience: stop after this many epochs without a better validation score (None: never).
        weight_decay: AdamW's decoupled weight decay.
        augment: shift images like the source's own training (the teacher sees the same view).

    Example:
        >>> tuned = fit(pruned, sample_source("digits_cnn"), epochs=3, lr=1e-3)  # doctest: +SKIP
    """
    if epochs < 1:
        raise ValueError(f"`epochs >= 1` must hold, but got epochs={epochs}")
    if not lr > 0:
        raise ValueError(f"`lr > 0` must hold, but got lr={lr}")
    if patience is not None and patience < 1:
        raise ValueError(f"`patience >= 1` must hold, but got patience={patience}")
    if teacher is not None and loss_fn is not None:
        raise ValueError("at most one of `loss_fn` and `teacher` may be set, but got both")
    fit_part, val = train_val_split(source, seed)
    model = copy.deepcopy(model)
    with seeded(seed):
        x, y = torch.tensor(fit_part.x), torch.tensor(fit_part.y)
        vx, vy = torch.tensor(val.x), torch.tensor(val.y)
        shift = source.train_shift if augment and x.dim() == 4 else 0  # images (N, C, H, W)
        t_fit = t_val = None
        if teacher is not None:
            teacher = copy.deepcopy(teacher)
            t_val = logits(teacher, vx)
            t_fit = None if shift else logits(teacher, x)  # else per batch, on the shifted view

        def objective(
            out: torch.Tensor, yb: torch.Tensor, tb: torch.Tensor | None
        ) -> torch.Tensor:
            if tb is not None:
                return kd_loss(out, tb, yb, temperature, alpha)
            return (loss_fn or F.cross_entropy)(out, yb)

        def score(recalibrate: bool = True) -> tuple[float, float]:  # higher is better
            if recalibrate:  # validate on exact BatchNorm statistics, kept if best
                recalibrate_bn_(model, x)
            out = logits(model, vx)
            return float((out.argmax(1) == vy).float().mean()), -float(objective(out, vy, t_val))

        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        steps = epochs * -(-len(x) // BATCH_SIZE)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        gen = torch.Generator().manual_seed(seed)
        # the starting weights compete as they came in (their own BatchNorm statistics)
        best, best_state, stale = score(recalibrate=False), copy.deepcopy(model.state_dict()), 0
        for _ in range(epochs):
            model.train()
            for idx in torch.randperm(len(x), generator=gen).split(BATCH_SIZE):
                xb = random_shift(x[idx], shift, gen)  # the source's own augmentation
                tb = None
                if teacher is not None:  # the teacher sees the same view as the student
                    tb = logits(teacher, xb) if shift else t_fit[idx]
                loss = objective(model(xb), y[idx], tb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            current = score()
            if current > best:
                best, best_state, stale = current, copy.deepcopy(model.state_dict()), 0
            else:
                stale += 1
                if patience is not None and stale >= patience:
                    break
        model.load_state_dict(best_state)
    return model.eval()
