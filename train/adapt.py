"""Site adaptation: fine-tune a shipped model on a site's own labelled images, estimated by K-fold
cross-validation so that no selection ever reads the fold it is scored on.

One fold: fine-tune from the shipped weights on the other folds' images (a fixed recipe, ``AdaptRecipe``,
chosen before any fold was scored), pick the threshold that maximises pooled F1 on those same training
images, then score the held-out images at it. The folds' held-out images together cover the site once:
their per-image statistics pooled give the site's estimate, with a bootstrap interval over images.

Images are brought to the shipped model's scale (FOV diameter from its manifest) before training, as the
runtime brings every input there before the network runs; scoring maps each probability map back to the
image's own size and scores it against the site's own labels, as ``evaluate`` does.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from fundus_edge.measure.intervals import ImageStats
from fundus_edge.measure.metrics import MetricAccumulator, best_threshold
from fundus_edge.measure.site import Site, read_site
from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.fov import estimate_fov
from fundus_edge.runtime.images import read_binary, read_image
from fundus_edge.runtime.scale import fov_scale, resize_image, resize_prob

from .data import LoadedSample


@dataclass(frozen=True)
class AdaptRecipe:
    """How one fine-tune runs. Fixed before any held-out fold is scored (docs/adapt.md says why these
    values): a short cosine schedule from a learning rate a third of the refits', on the shipped model's
    crops and camera augmentation."""

    iters: int = 600
    lr: float = 5e-4
    warmup: int = 50
    batch_size: int = 8
    crop: int = 128
    seed: int = 0

    def optim(self) -> dict:
        return {
            "iters": self.iters,
            "lr": self.lr,
            "min_lr": self.lr / 100,
            "warmup": self.warmup,
            "batch_size": self.batch_size,
            "crop": self.crop,
            "schedule": "cosine",
            "cycles": 1,
            "val_every": self.iters,
            "seed": self.seed,
            "threshold": "train",
            "val_perturb": (),
        }


@dataclass(frozen=True)
class SiteSample:
    """One site image at its own size (for scoring) and at the model's scale (for training)."""

    native: LoadedSample
    scaled: LoadedSample
    factor: float


def _load(img, train_diameter: float | None) -> SiteSample:
    rgb = read_image(img.image)
    label = read_binary(img.label, "label") if img.label else None
    for what, arr, where in (("label", label, img.label),):
        if arr is not None and arr.shape != rgb.shape[:2]:
            raise InputError(
                f"{where}: {what} is {arr.shape[1]}x{arr.shape[0]} but image {img.image.name} is "
                f"{rgb.shape[1]}x{rgb.shape[0]}"
            )
    fov = read_binary(img.fov, "FOV mask") if img.fov else estimate_fov(rgb)
    if fov.shape != rgb.shape[:2]:
        raise InputError(
            f"{img.fov}: FOV mask is {fov.shape[1]}x{fov.shape[0]}, the image {rgb.shape[1]}x{rgb.shape[0]}"
        )
    native = LoadedSample(img.name, rgb, label, fov)
    f = fov_scale(fov, train_diameter)
    if f == 1.0:
        return SiteSample(native, native, 1.0)
    small = resize_image(rgb, f)
    h, w = small.shape[:2]

    def nearest(m):  # labels and FOV keep hard edges
        return (
            None if m is None else cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        )

    return SiteSample(native, LoadedSample(img.name, small, nearest(label), nearest(fov)), f)


def load_site(site: Site, train_diameter: float | None) -> list[SiteSample]:
    """Every image of a labelled site, read once."""
    if not site.labelled:
        raise InputError(f"{site.root}: adapting needs a label for every image")
    return [_load(img, train_diameter) for img in site.images]


def folds(names: list[str], k: int, seed: int = 0) -> list[list[int]]:
    """``k`` folds of image indices: a seeded shuffle of the sorted names dealt round-robin, so fold sizes
    differ by at most one and the split depends on the names alone."""
    if not 2 <= k <= len(names):
        raise InputError(f"--folds {k}: give 2 to {len(names)} for {len(names)} images")
    order = sorted(range(len(names)), key=lambda i: names[i])
    random.Random(seed).shuffle(order)
    return [sorted(order[j::k]) for j in range(k)]


def score(prob_fn, samples: list[SiteSample], threshold: float) -> MetricAccumulator:
    """Score each image at its own size: the probability at the model's scale mapped back."""
    acc = MetricAccumulator(threshold=threshold, per_image_auc=False)
    for s in samples:
        prob = resize_prob(prob_fn(s.scaled.rgb), s.native.rgb.shape[:2])
        acc.add(prob, s.native.label, s.native.fov, s.native.name)
    return acc


def net_prob_fn(net, pre, pad_multiple: int):
    from .infer import predict_prob

    net.eval()
    return lambda rgb: predict_prob(net, rgb, pre, pad_multiple)


def train_threshold(prob_fn, samples: list[SiteSample]) -> float:
    """The F1-optimal threshold on training images (scored at their own size, as the held-out ones)."""
    probs, truths = [], []
    for s in samples:
        p = resize_prob(prob_fn(s.scaled.rgb), s.native.rgb.shape[:2])
        probs.append(p[s.native.fov])
        truths.append(s.native.label[s.native.fov])
    return best_threshold(probs, truths)[0]


@dataclass
class FoldResult:
    fold: int
    n_train: int
    held_out: list[str]
    threshold: float
    seconds: float
    stats: ImageStats
    cpu_seconds: float = 0.0  # this process's CPU time (wall time varies with the machine's load)
    train_names: list[str] = field(default_factory=list)


def fine_tune(model_dir: Path, cfg, recipe: AdaptRecipe, train: list[SiteSample], out: Path, progress: bool):
    """Fine-tune the shipped weights on ``train`` (at the model's scale); returns the trained network."""
    from .trainer import Trainer

    cfg = cfg.with_overrides(optim=recipe.optim(), data={"val_count": 0})
    t = Trainer(
        cfg,
        out,
        progress=progress,
        init_weights=model_dir,
        data=([s.scaled for s in train], []),
        checkpoint_minutes=0,
    )
    t.fit(force=True)
    return t.net


def run_fold(
    model_dir: Path,
    cfg,
    recipe: AdaptRecipe,
    samples: list[SiteSample],
    train_idx: list[int],
    test_idx: list[int],
    out: Path,
    fold: int,
    progress: bool = False,
    extra: list[SiteSample] | tuple = (),
) -> FoldResult:
    """Fine-tune on ``train_idx`` (none: the shipped model at its own threshold), score ``test_idx``.
    ``extra``: images every fine-tune also trains on and picks its threshold on (a two-camera model keeps
    the original camera's training images in the mix); never scored here."""
    t0, c0 = time.perf_counter(), time.process_time()
    train = [samples[i] for i in train_idx]
    if train and extra:
        train = [*train, *extra]
    test = [samples[i] for i in test_idx]
    if train:
        net = fine_tune(model_dir, cfg, recipe, train, out, progress)
        fn = net_prob_fn(net, cfg.preprocess, net.pad_multiple)
        thr = train_threshold(fn, train)
    else:
        from .checkpoint import load_source

        net, info = load_source(model_dir)
        fn = net_prob_fn(net, cfg.preprocess, net.pad_multiple)
        thr = float(info.threshold)
    acc = score(fn, test, thr)
    return FoldResult(
        fold=fold,
        n_train=len(train_idx),
        held_out=[s.native.name for s in test],
        threshold=thr,
        seconds=time.perf_counter() - t0,
        stats=acc.image_stats(),
        cpu_seconds=time.process_time() - c0,
        train_names=[samples[i].native.name for i in train_idx],
    )


def pooled(results: list[FoldResult]) -> ImageStats:
    """The held-out folds' per-image statistics as one set (each image once)."""
    names = tuple(n for r in results for n in r.stats.names)
    if len(set(names)) != len(names):
        raise ValueError("an image was held out twice")
    cat = lambda attr: (  # noqa: E731
        None
        if any(getattr(r.stats, attr) is None for r in results)
        else np.concatenate([getattr(r.stats, attr) for r in results])
    )
    return ImageStats(
        names, np.concatenate([r.stats.counts for r in results]), cat("pos_hist"), cat("neg_hist")
    )


def subset(train_idx: list[int], n: int, seed: int, fold: int) -> list[int]:
    """The first ``n`` of a seeded order of a fold's training images (a learning-curve point); the same
    seed gives nested subsets, so a point with more images holds those of the smaller ones."""
    order = list(train_idx)
    random.Random(seed * 1000 + fold).shuffle(order)
    return sorted(order[:n])


def with_recipe(recipe: AdaptRecipe, **kw) -> AdaptRecipe:
    return replace(recipe, **kw)


def read_labelled_site(path: str | Path, split: str | None = None) -> Site:
    return read_site(path, split, require_labels=True)
