"""The trainer: crop batches, CE + Dice, Adam with warm-up and cosine/poly decay, full-image
validation, best/last checkpoints, resume, CSV log, tqdm progress."""

from __future__ import annotations

import csv
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fundus_edge.measure.metrics import MetricAccumulator, best_threshold
from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.fov import fov_diameter
from fundus_edge.runtime.preprocess import preprocess

from .augment import photometric_planes, random_crop
from .checkpoint import OPTIMIZER, WEIGHTS, read_checkpoint, save_checkpoint
from .config import TrainConfig, dump_config
from .data import discover, load_sample, split_train_val


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    iterations: int
    best_val_f1: float
    best_iteration: int
    threshold: float
    elapsed_s: float
    device: str
    iters_per_s: float
    stopped_at: int | None = None  # the iteration a SIGTERM stopped the run at (last/ saved there), else None


class StopRequest:
    """SIGTERM asks a run to stop after the step in progress, with last/ saved there, instead of losing up
    to ``checkpoint_minutes`` of work (a scheduler, or a session that ends, sends it before killing).
    Installed only in the main thread (only it may set handlers) and restored when the run ends."""

    def __init__(self):
        import signal
        import threading

        self.asked, self._prev = False, None
        if threading.current_thread() is threading.main_thread():
            self._prev = signal.signal(signal.SIGTERM, self._ask)

    def _ask(self, signum, frame) -> None:
        self.asked = True

    def restore(self) -> None:
        import signal

        if self._prev is not None:
            signal.signal(signal.SIGTERM, self._prev)
            self._prev = None


def select_device(device: str = "auto") -> str:
    """Set Paddle's device and return the one actually used (never a silent fallback)."""
    import paddle

    has_cuda = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if device == "gpu" and not has_cuda:
        raise InputError(
            "--device gpu asked, but this Paddle build has no CUDA device (install the gpu extra)"
        )
    if device not in ("auto", "cpu", "gpu"):
        raise InputError(f"unknown device {device!r}; choose auto, cpu or gpu")
    used = "gpu" if (device == "gpu" or (device == "auto" and has_cuda)) else "cpu"
    paddle.set_device("gpu:0" if used == "gpu" else "cpu")
    return used


def prepare_out_dir(out: Path, resume: bool, force: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if resume:
            if not (out / "last" / WEIGHTS).is_file():
                raise InputError(f"{out}: --resume given but no checkpoint in {out / 'last'}")
            return
        if not force:
            raise InputError(
                f"{out}: output folder exists and is not empty "
                "(use --resume to continue or --force to overwrite)"
            )
        shutil.rmtree(out)
    elif resume:
        raise InputError(f"{out}: --resume given but the folder does not exist")
    out.mkdir(parents=True, exist_ok=True)


def _scheduler(cfg: TrainConfig):
    import paddle

    o = cfg.optim
    decay_steps = max(1, o.iters - o.warmup)
    if o.schedule == "cosine":
        base = paddle.optimizer.lr.CosineAnnealingDecay(o.lr, T_max=decay_steps, eta_min=o.min_lr)
    elif o.schedule == "cosine-restarts":
        # `cycles` equal cosine cycles, each from lr down to min_lr (Little W-Net's cyclical schedule).
        if o.cycles < 1:
            raise InputError(f"optim.cycles {o.cycles}: give at least 1")
        base = paddle.optimizer.lr.CosineAnnealingWarmRestarts(
            o.lr, T_0=max(1, -(-decay_steps // o.cycles)), eta_min=o.min_lr
        )
    elif o.schedule == "poly":
        base = paddle.optimizer.lr.PolynomialDecay(o.lr, decay_steps=decay_steps, end_lr=o.min_lr, power=0.9)
    else:
        raise InputError(f"unknown schedule {o.schedule!r}; choose cosine, cosine-restarts or poly")
    if o.warmup > 0:
        return paddle.optimizer.lr.LinearWarmup(
            base, warmup_steps=o.warmup, start_lr=o.lr * 0.01, end_lr=o.lr
        )
    return base


def cycle_end(cfg: TrainConfig, done: int) -> int | None:
    """k when iteration ``done`` ends cycle k of a cosine-restarts schedule, short of the last (which
    ends the run: last/); None otherwise."""
    o = cfg.optim
    if o.schedule != "cosine-restarts" or o.cycles < 2:
        return None
    period = max(1, -(-max(1, o.iters - o.warmup) // o.cycles))
    k, rest = divmod(done - o.warmup, period)
    return k if rest == 0 and 1 <= k < o.cycles else None


def keep_cycle_best(out: Path, k: int) -> Path | None:
    """best/ as it stands at the end of cycle k, copied to cand-cycle<k>/ (the weight average's members,
    docs/experiments-wnet.md); an existing copy is kept (a resumed run passes the same end once)."""
    src, dst = out / "best", out / f"cand-cycle{k}"
    if not src.is_dir() or dst.exists():
        return None
    shutil.copytree(src, dst)
    return dst


def _truncate_log(path: Path, iteration: int) -> None:
    """Drop log rows past ``iteration``: after a kill, the run resumes from its last checkpoint and
    would log those iterations again."""
    if not path.exists():
        return
    rows = list(csv.reader(path.open(newline="")))
    keep = [r for i, r in enumerate(rows) if i == 0 or (r and r[0].isdigit() and int(r[0]) <= iteration)]
    if len(keep) != len(rows):
        with path.open("w", newline="") as f:
            csv.writer(f).writerows(keep)


class RunStatus:
    """``status.yaml`` in the run folder: where a (possibly hours-long, often resumed) run stands."""

    def __init__(self, path: Path, name: str, total: int):
        self.path, self.name, self.total = path, name, total

    def write(
        self, done: int, elapsed: float, start: int, t0: float, loss, best_f1: float, best_it: int, event: str
    ) -> None:
        import yaml

        run_s = time.perf_counter() - t0
        rate = (done - start) / run_s if run_s > 0 and done > start else 0.0
        st = {
            "run": self.name,
            "event": event,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "iteration": int(done),
            "of": int(self.total),
            "elapsed_min": round(elapsed / 60, 1),
            "this_process_it_per_s": round(rate, 4),
            "eta_min": round((self.total - done) / rate / 60, 1) if rate > 0 else None,
            "loss_ema": None if loss is None else round(float(loss), 5),
            "best_val_f1": round(float(best_f1), 5) if best_f1 >= 0 else None,
            "best_iteration": int(best_it) or None,
            "resume": "fundus-edge train ... --out <this folder> --resume",
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(st, sort_keys=False))
        tmp.replace(self.path)


def _check_threshold(thr) -> None:
    if thr == "train":
        return
    if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not 0.0 < thr < 1.0:
        raise InputError(f"optim.threshold {thr!r}: give a number in (0, 1) or 'train'")


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        out_dir: str | Path,
        device: str = "auto",
        progress: bool = True,
        init_weights: str | Path | None = None,
        net=None,
        checkpoint_minutes: float = 10.0,
        to_static: bool = False,
        data: tuple[list, list] | None = None,
    ):
        self.cfg = cfg
        # (training, validation) LoadedSample lists given by the caller (adapt's folds, a site's images at
        # the model's scale) instead of cfg.data's folder.
        self.given_data = data
        # Trace the training step's forward with paddle.jit.to_static: +12 % pixels/s for the W-Net at one
        # thread on an AVX2 CPU (docs/findings/training.md); slower on STACK.md's AVX-512 CPU at two threads.
        self.to_static = to_static
        # A long CPU run can be killed at any moment: besides every validation, `last/` is saved
        # whenever this much wall time has passed since the previous save.
        self.checkpoint_s = max(0.0, float(checkpoint_minutes)) * 60.0
        self.given_net = net  # a prepared network (e.g. fake-quantized for QAT) to train as is
        self.net = None  # the trained network after fit()
        self.out = Path(out_dir)
        self.device_request = device
        self.progress = progress
        self.init_weights = init_weights
        self._teacher_maps = None  # teacher_mode image: one HxW map per training image, made by fit()

    # -- data ---------------------------------------------------------------------------------
    def load_data(self):
        if self.given_data is not None:
            train, val = (list(x) for x in self.given_data)
        else:
            d = self.cfg.data
            if not d.root:
                raise InputError("no training data given (--data DIR)")
            samples = discover(d.root, split="train", layout=d.layout)
            train_s, val_s = split_train_val(samples, d.val_count, d.split_seed)
            load = lambda ss: [load_sample(s) for s in ss]  # noqa: E731
            train, val = load(train_s), load(val_s)
        if not train:
            raise InputError("no training images")
        self._planes = [preprocess(s.rgb, self.cfg.preprocess) for s in train]
        self._camera = self._camera_copies(train)
        # The scale the model learns: the runtime resizes inputs so their FOV has this diameter.
        self.scale_info = {"fov_diameter_px": float(np.median([fov_diameter(s.fov) for s in train]))}
        return train, val

    def _camera_copies(self, train) -> list[list[np.ndarray]]:
        """Preprocessed random camera renderings of each training image (JPEG, exposure, blur, ...).
        Made once: CLAHE on a whole image per crop would cost more than the training step."""
        a = self.cfg.augment
        if a.camera <= 0 or a.camera_copies <= 0:
            return [[] for _ in train]
        from fundus_edge.measure.camera import random_camera

        rng = np.random.default_rng([self.cfg.optim.seed, 7919])
        q = tuple(int(v) for v in a.camera_jpeg_quality)
        if len(q) != 2 or not 1 <= q[0] <= q[1] <= 100:
            raise InputError(
                f"augment.camera_jpeg_quality {a.camera_jpeg_quality!r}: give [low, high] within 1-100"
            )
        return [
            [
                preprocess(random_camera(s.rgb, rng, a.camera_jpeg, q), self.cfg.preprocess)
                for _ in range(a.camera_copies)
            ]
            for s in train
        ]

    def batch(self, train, it: int):
        """Batch ``it`` of the run's seeded sequence: (crops, labels, teacher maps or None). The teacher
        maps (teacher_mode image) are warped with their crops; the random draws - the data order - and
        the crops are the same with and without them."""
        o, rng = self.cfg.optim, np.random.default_rng([self.cfg.optim.seed, it])
        maps = self._teacher_maps
        xs, ys, ts = [], [], []
        pre = self.cfg.preprocess
        for _ in range(o.batch_size):
            i = int(rng.integers(len(train)))
            s = train[i]
            planes = self._planes[i]
            if self._camera[i] and rng.random() < self.cfg.augment.camera:
                planes = self._camera[i][int(rng.integers(len(self._camera[i])))]
            x, y, t = random_crop(
                planes, s.label, s.fov, o.crop, self.cfg.augment, rng, None if maps is None else maps[i]
            )
            ts.append(t)
            if rng.random() < 0.8:
                x = photometric_planes(x, pre.channels, self.cfg.augment, rng, pre.scale, pre.offset)
            xs.append(x)
            ys.append(y)
        return np.stack(xs), np.stack(ys), (np.stack(ts) if maps is not None else None)

    # -- validation -----------------------------------------------------------------------------
    def validate(self, net, val, perturb: bool = True, prefix: str = "val") -> tuple[float, dict]:
        """F1-optimal threshold on ``val`` and the metrics there (keys ``<prefix>_f1`` etc.)."""
        from .infer import predict_prob

        net.eval()
        probs = [predict_prob(net, s.rgb, self.cfg.preprocess, net.pad_multiple) for s in val]
        net.train()
        thr, _ = best_threshold(
            [p[s.fov] for p, s in zip(probs, val, strict=False)], [s.label[s.fov] for s in val]
        )
        acc = MetricAccumulator(threshold=thr, per_image_auc=False)
        for p, s in zip(probs, val, strict=False):
            acc.add(p, s.label, s.fov, s.name)
        m = acc.pooled()
        out = {
            f"{prefix}_{k}": v
            for k, v in (
                ("f1", m.f1),
                ("auc", m.auc),
                ("iou", m.iou),
                ("acc", m.acc),
                ("se", m.se),
                ("sp", m.sp),
            )
        }
        if perturb and self.cfg.optim.val_perturb:
            out.update(self._validate_perturbed(net, val, thr))
        return thr, out

    def _validate_perturbed(self, net, val, thr: float) -> dict:
        """Validation F1 under camera perturbations, with the runtime's rescaling emulated."""
        from fundus_edge.measure.robustness import score_perturbations
        from fundus_edge.runtime.scale import fov_scale, resize_image

        from .infer import predict_prob

        def prob_fn(rgb, fov):
            f = fov_scale(fov, self.scale_info["fov_diameter_px"])
            return predict_prob(net, resize_image(rgb, f), self.cfg.preprocess, net.pad_multiple)

        net.eval()
        rows = score_perturbations(prob_fn, val, self.cfg.optim.val_perturb, thr)[1:]
        net.train()
        out = {f"val_f1_{r.perturbation}": r.metrics.f1 for r in rows}
        out["val_f1_perturbed"] = float(np.mean([r.metrics.f1 for r in rows]))
        return out

    def _refit_threshold(self, net, train) -> tuple[float, dict]:
        """A refit's threshold: the configured number, or with ``threshold: train`` the F1-optimal one on
        the clean whole training images (how the literature fixes it without a held-out split)."""
        if self.cfg.optim.threshold == "train":
            return self.validate(net, train, perturb=False, prefix="train")
        return float(self.cfg.optim.threshold), {}

    def _score(self, vm: dict) -> float:
        if self.cfg.optim.select == "robust" and "val_f1_perturbed" in vm:
            return 0.5 * (vm["val_f1"] + vm["val_f1_perturbed"])
        return vm["val_f1"]

    def build_network(self):
        """The network to train: fresh, or the weights of ``init_weights`` (checkpoint or model
        folder, pruned shapes included) for fine-tuning."""
        from .model import network_from_config

        if self.given_net is not None:
            self.given_net.train()
            return self.given_net
        if self.init_weights:
            from .checkpoint import load_source

            net, _ = load_source(self.init_weights)
            net.train()
            return net
        c = self.cfg
        return network_from_config(c.model, c.preprocess.in_channels)

    def _teachers(self) -> list:
        """The distillation teachers in eval mode ([] when distillation is off); several form an ensemble.
        Their preprocessing must be the student's."""
        o = self.cfg.optim
        if o.distill_weight <= 0:
            return []
        sources = [t.strip() for t in o.teacher.split(",") if t.strip()]
        if not sources:
            raise InputError("distill_weight > 0 needs a teacher (--teacher MODEL[,MODEL...])")
        if o.teacher_mode not in ("crop", "image"):
            raise InputError(f"optim.teacher_mode {o.teacher_mode!r}: choose crop or image")
        from .checkpoint import load_source

        teachers = []
        for src in sources:
            teacher, info = load_source(src)
            if info.config.preprocess != self.cfg.preprocess:
                raise InputError(
                    f"{src}: the teacher's preprocessing ({info.config.preprocess.channels}) differs from "
                    f"the student's ({self.cfg.preprocess.channels}); distillation needs the same input"
                )
            teacher.eval()
            for p in teacher.parameters():
                p.stop_gradient = True
            teachers.append(teacher)
        print(
            f"distilling from {', '.join(sources)} (weight {o.distill_weight}, "
            f"teacher on each {o.teacher_mode})",
            flush=True,
        )
        return teachers

    def _image_teacher_maps(self, teachers, train) -> list[np.ndarray]:
        """teacher_mode image: each training image's vessel probability, averaged over the teachers and
        over the image and its mirror image (HxW float32, once per run)."""
        from tqdm import tqdm

        from .infer import predict_prob

        pre, maps = self.cfg.preprocess, []
        for s in tqdm(train, desc="teacher maps", unit="image", disable=not self.progress):
            probs = []
            for t in teachers:
                probs.append(predict_prob(t, s.rgb, pre, t.pad_multiple))
                probs.append(
                    predict_prob(t, np.ascontiguousarray(s.rgb[:, ::-1]), pre, t.pad_multiple)[:, ::-1]
                )
            maps.append(np.mean(probs, axis=0).astype(np.float32))
        return maps

    def loss(self, step, teachers, loss_fn, xt, yt, tt=None):
        """``step``: the network's ``Outputs`` (traced or not); a W-Net's first output is supervised too,
        weighted by ``optim.aux_weight``; the last is the model's output. The distillation target is
        ``tt`` (teacher maps cropped with the batch) or the teachers' mean probability on ``xt``."""
        import paddle

        from .losses import distill_loss, logits_of_probability
        from .model import vessel_probability

        *aux, logits = step(xt)
        loss = loss_fn(logits, yt)
        for a in aux:
            loss = loss + self.cfg.optim.aux_weight * loss_fn(a, yt)
        if tt is None and teachers:
            with paddle.no_grad():
                tt = paddle.add_n([vessel_probability(t(xt)) for t in teachers])[:, 0] / len(teachers)
        if tt is not None:
            loss = loss + self.cfg.optim.distill_weight * distill_loss(logits, logits_of_probability(tt))
        return loss

    # -- main loop -----------------------------------------------------------------------------
    def fit(self, resume: bool = False, force: bool = False) -> TrainResult:
        import paddle

        # Optimizer state is keyed by parameter and moment names, which Paddle draws from
        # process-wide counters (moments lazily, at the first step): a fresh name scope around
        # the whole run makes them the same in every run, so --resume always matches.
        with paddle.utils.unique_name.guard():
            return self._fit(resume, force)

    def _announce_refit(self, train) -> None:
        """Without a validation split (a refit) say which threshold the checkpoints will carry."""
        o = self.cfg.optim
        how = (
            "the threshold that maximises F1 on the training images"
            if o.threshold == "train"
            else f"the configured threshold {o.threshold:.3f}"
        )
        print(
            f"no validation split: training on all {len(train)} images; checkpoints keep the latest "
            f"weights with {how}",
            flush=True,
        )

    def _resume(self, net, opt) -> tuple[int, float, float | None, float, int, float]:
        """Load ``last/`` into ``net`` and ``opt``; (start, elapsed_s, loss EMA, best score, best
        iteration, best threshold) of the run so far."""
        import paddle

        best_f1, best_it, best_thr = -1.0, 0, 0.5
        last = read_checkpoint(self.out / "last")
        net.set_state_dict(paddle.load(str(last.path / WEIGHTS)))
        opt.set_state_dict(paddle.load(str(last.path / OPTIMIZER)))
        start, elapsed0 = last.iteration, last.elapsed_s
        loss_ema0 = last.extra.get("loss_ema")
        if (self.out / "best").exists():
            b = read_checkpoint(self.out / "best")
            best_f1, best_it, best_thr = (
                self._score(b.metrics) if "val_f1" in b.metrics else -1.0,
                b.iteration,
                b.threshold,
            )
        print(
            f"resuming at iteration {start}"
            + (f" (best val F1 {best_f1:.4f} at {best_it})" if best_f1 >= 0 else ""),
            flush=True,
        )
        return start, elapsed0, loss_ema0, best_f1, best_it, best_thr

    def _open_log(self, resume: bool, start: int):
        """``log.csv`` opened for appending (rows past ``start`` dropped on resume): (file, csv writer)."""
        log_path = self.out / "log.csv"
        if resume:
            _truncate_log(log_path, start)  # rows written after the checkpoint we resume from
        new_log = not log_path.exists()
        logf = open(log_path, "a", newline="")
        log = csv.writer(logf)
        if new_log:
            log.writerow(
                ["iteration", "loss", "lr", "val_f1", "val_auc", "threshold", "elapsed_s", "val_f1_perturbed"]
            )
        return logf, log

    def _train_step(self, step, teachers, loss_fn, opt, sched, scaler, batch) -> float:
        """One optimizer step on ``batch`` (crops, labels, teacher maps or None); the loss as a float.
        ``scaler`` (a GradScaler) is given on the GPU, where the step runs in mixed precision."""
        import paddle

        x, y, t = batch
        xt, yt = paddle.to_tensor(x), paddle.to_tensor(y)
        tt = None if t is None else paddle.to_tensor(t)
        if scaler is not None:
            with paddle.amp.auto_cast():
                loss = self.loss(step, teachers, loss_fn, xt, yt, tt)
            scaler.scale(loss).backward()
            scaler.minimize(opt, loss)
        else:
            loss = self.loss(step, teachers, loss_fn, xt, yt, tt)
            loss.backward()
            opt.step()
        opt.clear_grad()
        sched.step()
        return float(loss.item())

    def _extra(self, loss_ema: float, refit: bool, **more) -> dict:
        """The ``extra`` record of a checkpoint: the training scale, the loss EMA and ``more``."""
        return {"scale": self.scale_info, "loss_ema": loss_ema, **more, **({"refit": True} if refit else {})}

    @staticmethod
    def _log_row(done: int, loss_ema: float, lr: float, thr: float, elapsed: float, vm: dict) -> list:
        def fmt(k: str) -> str:
            return f"{vm[k]:.5f}" if k in vm else ""

        return [
            done,
            f"{loss_ema:.5f}",
            f"{lr:.3e}",
            fmt("val_f1"),
            fmt("val_auc"),
            f"{thr:.3f}",
            f"{elapsed:.1f}",
            fmt("val_f1_perturbed"),
        ]

    @staticmethod
    def _validated_line(
        done: int, loss_ema: float, thr: float, vm: dict, val: bool, best_f1: float, best_it: int
    ) -> str:
        if val:
            pert = f"  perturbed F1 {vm['val_f1_perturbed']:.4f}" if "val_f1_perturbed" in vm else ""
            return (
                f"iter {done}: loss {loss_ema:.4f}  val F1 {vm['val_f1']:.4f}  "
                f"AUC {vm['val_auc']:.4f}{pert}  thr {thr:.2f}  (best {best_f1:.4f} @ {best_it})"
            )
        fit = f", threshold {thr:.3f} (training-image F1 {vm['train_f1']:.4f})" if vm else ""
        return f"iter {done}: loss {loss_ema:.4f}  (no validation{fit}; saved)"

    def _fit(self, resume: bool, force: bool) -> TrainResult:
        """The run.

        Long because: the loop below stays one piece: the best/last/timed/SIGTERM saves, the status file and
        the resume state (start, best score, loss EMA, time of the last save) are locals it updates
        together, in the order an exact --resume relies on."""
        import paddle
        from tqdm import tqdm

        from .losses import build_loss
        from .model import count_params

        cfg, o = self.cfg, self.cfg.optim
        prepare_out_dir(self.out, resume, force)
        device = select_device(self.device_request)
        print(f"device: {device} (paddle {paddle.__version__})", flush=True)
        _check_threshold(o.threshold)
        train, val = self.load_data()
        if not val:
            self._announce_refit(train)
        paddle.seed(o.seed)
        net = self.build_network()
        sched = _scheduler(cfg)
        opt = paddle.optimizer.Adam(
            learning_rate=sched, parameters=net.parameters(), weight_decay=o.weight_decay
        )
        loss_fn = build_loss(o.dice_weight)
        self._teacher_maps = None
        teachers = self._teachers()
        if teachers and o.teacher_mode == "image":
            self._teacher_maps = self._image_teacher_maps(teachers, train)
            teachers = []  # their maps are all the run needs
        start, best_f1, best_it, best_thr, elapsed0, loss_ema0 = 0, -1.0, 0, 0.5, 0.0, None
        if resume:
            start, elapsed0, loss_ema0, best_f1, best_it, best_thr = self._resume(net, opt)
        (self.out / "config.yaml").write_text(dump_config(cfg))
        print(
            f"model: {cfg.model.arch} base {cfg.model.base} depth {cfg.model.depth}, "
            f"{count_params(net):,} parameters; {len(train)} training / {len(val)} validation images",
            flush=True,
        )
        amp = device == "gpu"
        scaler = paddle.amp.GradScaler() if amp else None
        logf, log = self._open_log(resume, start)
        t0 = time.perf_counter()
        net.train()
        bar = tqdm(
            range(start, o.iters),
            initial=start,
            total=o.iters,
            disable=not self.progress,
            desc=cfg.name,
            unit="it",
        )
        from .model import Outputs

        step = Outputs(net)
        if self.to_static:
            step = paddle.jit.to_static(step, full_graph=True)
        loss_ema = loss_ema0
        last_save = time.perf_counter()
        status = RunStatus(self.out / "status.yaml", cfg.name, o.iters)
        status.write(
            start,
            elapsed0,
            start,
            t0,
            loss_ema,
            best_f1,
            best_it,
            f"resumed at {start}" if resume else "started",
        )
        thr_now = best_thr
        it = start
        stop, stopped_at = StopRequest(), None
        try:
            for it in bar:
                lv = self._train_step(step, teachers, loss_fn, opt, sched, scaler, self.batch(train, it))
                loss_ema = lv if loss_ema is None else 0.98 * loss_ema + 0.02 * lv
                bar.set_postfix(loss=f"{loss_ema:.4f}", best=f"{max(best_f1, 0):.4f}")
                done = it + 1
                if done % o.val_every == 0 or done == o.iters:
                    # Without a validation split (a refit) every checkpoint is the latest and "best".
                    thr, vm = self.validate(net, val) if val else self._refit_threshold(net, train)
                    elapsed = elapsed0 + time.perf_counter() - t0
                    log.writerow(self._log_row(done, loss_ema, sched.get_lr(), thr, elapsed, vm))
                    logf.flush()
                    extra = self._extra(loss_ema, not val)
                    if not val or self._score(vm) > best_f1:
                        best_f1, best_it, best_thr = (self._score(vm) if val else best_f1), done, thr
                        save_checkpoint(self.out / "best", net, None, cfg, done, thr, vm, elapsed, extra)
                    save_checkpoint(self.out / "last", net, opt, cfg, done, thr, vm, elapsed, extra)
                    last_save, thr_now = time.perf_counter(), thr
                    status.write(done, elapsed, start, t0, loss_ema, best_f1, best_it, "validated and saved")
                    bar.write(self._validated_line(done, loss_ema, thr, vm, bool(val), best_f1, best_it))
                elif self.checkpoint_s and time.perf_counter() - last_save >= self.checkpoint_s:
                    elapsed = elapsed0 + time.perf_counter() - t0
                    extra = self._extra(loss_ema, not val, timed=True)
                    save_checkpoint(self.out / "last", net, opt, cfg, done, thr_now, {}, elapsed, extra)
                    last_save = time.perf_counter()
                    status.write(done, elapsed, start, t0, loss_ema, best_f1, best_it, "saved (timed)")
                if (k := cycle_end(cfg, done)) is not None and keep_cycle_best(self.out, k):
                    bar.write(f"cycle {k} ends at {done}: best/ kept as cand-cycle{k}/")
                if stop.asked and done < o.iters:
                    elapsed = elapsed0 + time.perf_counter() - t0
                    extra = self._extra(loss_ema, not val, stopped="SIGTERM")
                    if done % o.val_every:  # (a validation has just saved last/ at `done` otherwise)
                        save_checkpoint(self.out / "last", net, opt, cfg, done, thr_now, {}, elapsed, extra)
                    status.write(
                        done, elapsed, start, t0, loss_ema, best_f1, best_it, f"stopped (SIGTERM) at {done}"
                    )
                    bar.write(
                        f"stopped by SIGTERM at iteration {done}; last/ saved there: resume with --resume"
                    )
                    stopped_at = done
                    break
        finally:
            stop.restore()
        bar.close()
        logf.close()
        self.net = net
        elapsed = elapsed0 + time.perf_counter() - t0
        run_s = time.perf_counter() - t0
        end = o.iters if stopped_at is None else stopped_at
        if stopped_at is None:
            status.write(end, elapsed, start, t0, loss_ema, best_f1, best_it, "finished")
        ran = max(0, end - start)
        return TrainResult(
            self.out,
            end,
            best_f1,
            best_it,
            best_thr,
            elapsed,
            device,
            ran / run_s if run_s > 0 else 0.0,
            stopped_at=stopped_at,
        )
