"""TrajAdapter: TrajTok as a probing head over the frozen dense features of a frozen video model.

A pretrained TrajTok segmenter (frozen) groups the pixels of a clip into trajectories; its masks, resized to the
frozen model's feature grid, pool those features into trajectory tokens (TrajTok's ``external_dim`` path: soft-mask
mean init + hard-mask Perceiver); the trajectory encoder and a small attentive head on the tokens are trained by the
probe's loss. The comparisons read the same frozen features:

- ``linear``: mean over all feature positions -> LayerNorm (no affine) -> linear classifier;
- ``attentive``: one learned query cross-attends to all feature positions -> linear classifier;
- ``trajadapter``: TrajTok tokens (1, 2 or 4 per trajectory) -> the same attentive head -> linear classifier.

Protocol (``select_probe``, ``chance_levels``): each probe is trained with class-balanced cross-entropy at a few
learning rates, the learning rate and step with the best balanced accuracy on the validation split are kept, and
only that state is scored on the test split, against chance levels that need no input (the test split's majority
class, the training split's majority class, a stratified guess, and 1 / classes for balanced accuracy).

Shapes: B batch, T frames, h x w the frozen model's feature grid, D its feature width, N trajectory tokens.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trajtok.core.modeling import TrajTok

if TYPE_CHECKING:
    from trajtok.trajvit2 import TrajViT2

logger = logging.getLogger(__name__)

PROBES = ("linear", "attentive", "trajadapter")


class AttentivePool(nn.Module):
    """A learned query cross-attends to tokens (B, N, D) (keys hidden where ``valid`` is False) -> (B, D)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"feature width {dim} must be divisible by heads {heads}")
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.out_norm = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor, valid: Tensor | None = None) -> Tensor:
        b = tokens.shape[0]
        x = self.norm(tokens)
        pad = None
        if valid is not None:
            pad = ~valid
            pad = pad & pad.sum(1, keepdim=True).lt(pad.shape[1])  # a clip without tokens attends to padding
        out, _ = self.attn(self.query.expand(b, -1, -1), x, x, key_padding_mask=pad)  # (B, 1, D)
        return self.out_norm(out[:, 0])


class LinearProbe(nn.Module):
    """features (B, T, h, w, D) -> logits (B, classes): mean over positions, LayerNorm, linear."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, features: Tensor, pixel_values: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b = features.shape[0]
        logits = self.head(self.norm(features.reshape(b, -1, features.shape[-1]).mean(1)))
        return logits, torch.full((b,), features[0, ..., 0].numel(), device=features.device)


class AttentiveProbe(nn.Module):
    """features (B, T, h, w, D) -> logits (B, classes): attentive pooling over all T * h * w positions, linear."""

    def __init__(self, dim: int, num_classes: int, heads: int = 4):
        super().__init__()
        self.pool = AttentivePool(dim, heads)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, features: Tensor, pixel_values: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b = features.shape[0]
        tokens = features.reshape(b, -1, features.shape[-1])  # (B, T*h*w, D)
        return self.head(self.pool(tokens)), torch.full((b,), tokens.shape[1], device=features.device)


class TrajAdapter(nn.Module):
    """Frozen pretrained TrajTok segmenter + trainable trajectory encoder over external features + attentive head.

    Build with ``TrajAdapter.from_pretrained_tokenizer``; ``forward(features, pixel_values)`` -> (logits, tokens).
    """

    def __init__(self, trajtok: TrajTok, num_classes: int, heads: int = 4):
        super().__init__()
        self.trajtok = trajtok
        dim = trajtok.config.resolved_output_dim
        self.pool = AttentivePool(dim, heads)
        self.head = nn.Linear(dim, num_classes)

    @classmethod
    def from_pretrained_tokenizer(
        cls, tokenizer: TrajTok, feature_dim: int, num_classes: int, tokens_per_trajectory: int = 1, heads: int = 4
    ) -> TrajAdapter:
        """Copy (and freeze) the backbone and segmenter of a pretrained TrajTok; the encoder starts fresh.

        The new TrajTok reads external features of width ``feature_dim`` and emits ``tokens_per_trajectory``
        tokens of that width per trajectory; its config records ``encoder_trained_by = "probe"``.
        """
        n = int(tokens_per_trajectory)
        cfg = tokenizer.config.replace(
            external_dim=feature_dim,
            output_dim=feature_dim,
            tokens_per_trajectory=(n,),
            inference_tokens_per_trajectory=n,
            encoder_trained_by="probe",
            token_mode="adaptive",
            max_tokens=None,
        )
        trajtok = TrajTok(cfg, load_backbone_weights=False)
        frozen = ("features.", "segmenter.")
        source = {k: v for k, v in tokenizer.state_dict().items() if k.startswith(frozen)}
        own = {k: v for k, v in trajtok.state_dict().items() if k.startswith(frozen)}
        bad = sorted(set(own) ^ set(source)) + sorted(k for k in own if k in source and own[k].shape != source[k].shape)
        if bad:
            raise ValueError(f"the pretrained tokenizer's backbone / segmenter do not fit the adapter: keys {bad}")
        trajtok.load_state_dict(source, strict=False)
        for name, p in trajtok.named_parameters():
            p.requires_grad_(not name.startswith(frozen))
        return cls(trajtok, num_classes, heads)

    def train(self, mode: bool = True) -> TrajAdapter:
        super().train(mode)
        # the frozen parts stay in eval mode (dropout off) whatever the probe does
        if self.trajtok.features is not None:  # None for a tokenizer with backbone="external"
            self.trajtok.features.eval()
        self.trajtok.segmenter.eval()
        return self

    def forward(self, features: Tensor, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        """features (B, T, h, w, D) frozen; pixel_values (B, T, C, H, W) for the segmenter -> logits, tokens (B,)."""
        out = self.trajtok(pixel_values, features=features)
        return self.head(self.pool(out.tokens, out.valid)), out.num_tokens


def build_probe(
    kind: str,
    feature_dim: int,
    num_classes: int,
    *,
    tokenizer: TrajTok | None = None,
    tokens_per_trajectory: int = 1,
    heads: int = 4,
) -> nn.Module:
    """A probe by name (``PROBES``); ``trajadapter`` needs the pretrained ``tokenizer``."""
    if kind == "linear":
        return LinearProbe(feature_dim, num_classes)
    if kind == "attentive":
        return AttentiveProbe(feature_dim, num_classes, heads)
    if kind == "trajadapter":
        if tokenizer is None:
            raise ValueError("probe 'trajadapter' needs a pretrained TrajTok (tokenizer=...)")
        return TrajAdapter.from_pretrained_tokenizer(tokenizer, feature_dim, num_classes, tokens_per_trajectory, heads)
    raise ValueError(f"unknown probe {kind!r}; valid choices: {PROBES}")


@dataclass
class ProbeData:
    """Frozen inputs of a probe task (all in memory)."""

    features: Tensor  # (S, T, h, w, D) frozen dense features
    pixels: Tensor  # (S, T, C, H, W) uint8 frames (the TrajAdapter's segmenter reads them)
    labels: Tensor  # (S,) long class
    videos: Tensor | None = None  # (S,) long: the video each clip comes from (clips of a video are not independent)


def class_weights(labels: Tensor, num_classes: int) -> Tensor:
    """(num_classes,) inverse-frequency weights of ``labels`` (mean 1 over the classes present; 0 for the absent):
    with them the cross-entropy gives every class the same total weight, so a probe gains nothing from the training
    split's class prior, which the test split need not share."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    present = counts > 0
    w = torch.where(present, 1.0 / counts.clamp_min(1.0), torch.zeros_like(counts))
    return (w * present.sum() / w.sum()).float()


def fit_probe(
    probe: nn.Module,
    train: ProbeData,
    *,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 3e-3,
    weight_decay: float = 0.01,
    seed: int = 0,
    class_weight: Tensor | None = None,
    every: int = 0,
    callback: Callable[[int], None] | None = None,
) -> list[float]:
    """Train the probe's trainable parameters with AdamW on cross-entropy (``class_weight`` per class, e.g.
    :func:`class_weights`); ``callback(step)`` runs after every ``every``-th step (and the last). Returns the loss of
    every step."""
    params = [p for p in probe.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the probe has no trainable parameters")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    n = train.labels.shape[0]
    probe.train()
    losses = []
    for step in range(1, steps + 1):
        idx = torch.randint(n, (min(batch_size, n),), generator=g)
        logits, _ = probe(train.features[idx], train.pixels[idx])
        loss = F.cross_entropy(logits, train.labels[idx], weight=class_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if callback is not None and every > 0 and (step % every == 0 or step == steps):
            callback(step)
            probe.train()
    return losses


def select_probe(
    build: Callable[[], nn.Module],
    train: ProbeData,
    val: ProbeData,
    *,
    lrs: Sequence[float] = (1e-3, 3e-3),
    steps: int = 300,
    every: int = 50,
    batch_size: int = 32,
    seed: int = 0,
    class_weight: Tensor | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train a fresh ``build()`` probe per learning rate in ``lrs`` on ``train`` and keep the state (learning rate,
    step: every ``every`` steps) with the best balanced accuracy on ``val`` (ties: the earlier). The test split is
    never read here. Returns the probe in that state and {lr, step, val_balanced_accuracy, curve: [(lr, step,
    val balanced accuracy)], final_loss}."""
    if val.labels.numel() == 0:
        raise ValueError("select_probe needs a non-empty validation split")
    best: dict[str, Any] = {"val_balanced_accuracy": -1.0}
    curve: list[tuple[float, int, float]] = []
    kept: nn.Module | None = None
    for lr in lrs:
        torch.manual_seed(seed)
        probe = build()

        def score(step: int, probe: nn.Module = probe, lr: float = lr) -> None:
            nonlocal kept
            acc = probe_accuracy(probe, val)["balanced_accuracy"]
            curve.append((lr, step, acc))
            if acc > best["val_balanced_accuracy"]:
                best.update(lr=lr, step=step, val_balanced_accuracy=acc)
                kept = copy.deepcopy(probe)

        losses = fit_probe(
            probe,
            train,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            class_weight=class_weight,
            every=every,
            callback=score,
        )
        if best.get("lr") == lr:
            best["final_loss"] = sum(losses[-10:]) / len(losses[-10:])
    assert kept is not None
    return kept.eval(), {**best, "curve": curve}


def balanced_accuracy(pred: Tensor, labels: Tensor) -> float:
    """Mean over the classes present in ``labels`` of the percent of that class predicted right (chance: 100 / the
    number of those classes, whatever the class prior)."""
    classes = torch.unique(labels)
    return 100.0 * float(torch.stack([(pred[labels == c] == c).float().mean() for c in classes]).mean())


def chance_levels(train_labels: Tensor, test_labels: Tensor) -> dict[str, float]:
    """Accuracies (percent) on ``test_labels`` that need no input: ``majority`` (always the test split's commonest
    class: an upper bound no real probe can pick without seeing the test split), ``train_majority`` (always the
    training split's commonest class), ``stratified`` (a class drawn at random with the training split's
    frequencies: expected accuracy) and ``balanced`` (the chance of :func:`balanced_accuracy`)."""
    c = int(max(train_labels.max(), test_labels.max())) + 1
    p_train = torch.bincount(train_labels, minlength=c).double() / train_labels.numel()
    p_test = torch.bincount(test_labels, minlength=c).double() / test_labels.numel()
    return {
        "majority": 100.0 * float(p_test.max()),
        "train_majority": 100.0 * float(p_test[int(p_train.argmax())]),
        "stratified": 100.0 * float((p_train * p_test).sum()),
        "balanced": 100.0 / int((p_test > 0).sum()),
    }


@torch.no_grad()
def probe_accuracy(probe: nn.Module, data: ProbeData, batch_size: int = 64) -> dict[str, Any]:
    """Accuracy and balanced accuracy (percent), mean tokens the probe read per clip, how often it predicted each
    class, and whether each clip was right (``correct``, for a bootstrap over videos)."""
    probe.eval()
    preds, tokens = [], []
    for s in range(0, data.labels.shape[0], batch_size):
        logits, n = probe(data.features[s : s + batch_size], data.pixels[s : s + batch_size])
        preds.append(logits.argmax(-1))
        tokens.append(n.float())
    pred = torch.cat(preds)
    return {
        "accuracy": 100.0 * float((pred == data.labels).float().mean()),
        "balanced_accuracy": balanced_accuracy(pred, data.labels),
        "tokens_mean": float(torch.cat(tokens).mean()),
        "predicted_classes": torch.bincount(pred, minlength=int(data.labels.max()) + 1).tolist(),
        "correct": (pred == data.labels).tolist(),
    }


@torch.no_grad()
def vit3d_dense_features(model: TrajViT2, pixel_values: Tensor) -> Tensor:
    """Frozen dense features of a ViT3D video CLIP (``TrajViT2`` with ``video_encoder='vit3d'``).

    The transformer's output tokens (B, T' * g * g, W) become (B, T, g, g, W): each tubelet's features are repeated
    over its frames (cropped to T).
    """
    if getattr(model.config, "video_encoder", None) != "vit3d":
        raise ValueError("vit3d_dense_features needs a TrajViT2 model with video_encoder='vit3d'")
    out = model.encode_video(pixel_values)
    assert out.tokens is not None and out.grid is not None  # the ViT3D encoder returns both
    tt, g, _ = out.grid
    b, t = pixel_values.shape[:2]
    feats = out.tokens.reshape(b, tt, g, g, -1)  # (B, T', g, g, W)
    return feats.repeat_interleave(model.config.tubelet, dim=1)[:, :t]  # (B, T, g, g, W)
