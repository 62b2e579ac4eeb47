"""What the verbs share: the options every long-running verb takes (threads, engine, precision, --force,
--no-progress), choices that name the nearest few, the one place threads are set, and the one-line errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from fundus_edge.runtime.errors import FundusEdgeError, nearest

PRECISIONS = ["auto", "fp32", "bf16", "fp16", "int8", "int8-sim"]


def set_threads(n: int | None) -> None:
    # Paddle/oneDNN read the OpenMP thread count when they first start, so set it before import (0: unset).
    from fundus_edge.runtime.threads import apply_threads as set_process_threads

    set_process_threads(n or None)


def apply_threads(args: argparse.Namespace) -> None:
    """The one place the CLI sets threads: main() calls it before any verb runs (and so before any engine
    or Paddle is imported). Verbs pass ``args.threads`` on to the engine they load, as its own option."""
    set_threads(getattr(args, "threads", None))


def run_verb(args: argparse.Namespace) -> int:
    """Run the parsed verb: the project's errors become one line on stderr (exit 2), never a traceback."""
    apply_threads(args)
    try:
        return args.func(args)
    except FundusEdgeError as exc:
        print(f"fundus-edge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fundus-edge {args.command}: interrupted", file=sys.stderr)
        return 130


def one_of(choices: Sequence[str], how_to_list: str = "") -> Callable[[str], str]:
    """An argparse ``type=`` that accepts one of ``choices``; a wrong value names the nearest three
    (errors.nearest) where argparse's own ``choices=`` check would list every one."""
    allowed = [str(c) for c in choices]

    def check(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"invalid choice {text!r}{nearest(text, allowed, how_to_list)}")
        return text

    return check


def backend_choices() -> list[str]:
    """--backend's choices: "auto" and every engine of the one engine table (read when the parser is
    built, so an engine ``register``ed before then is offered too)."""
    from fundus_edge.runtime.engines.table import names

    return ["auto", *names()]


def add_backend(p, what: str = "") -> None:
    """--backend, its choices and help from the engine table."""
    from fundus_edge.runtime.engines.table import ENGINE_TABLE, auto_order

    engines = ", ".join(f"{n} ({e.label})" for n, e in ENGINE_TABLE.items())
    choices = backend_choices()
    p.add_argument(
        "--backend",
        default="auto",
        type=one_of(choices, "--help"),
        choices=choices,
        metavar="ENGINE",
        help=f"{what}auto (the first installed engine that reads the model, in the order "
        f"{', '.join(auto_order())}) or one of {engines}",
    )


def add_run_options(p, threads_help: str | None = None, force_help: str | None = None) -> None:
    """--threads, --force and --no-progress, which the long-running commands share."""
    p.add_argument("--threads", type=int, help=threads_help)
    p.add_argument("--force", action="store_true", help=force_help)
    p.add_argument("--no-progress", action="store_true")


def add_engine_options(p, threads_help: str | None, precision_help: str) -> None:
    """--backend, --device, --threads and --precision of the commands that run a model folder."""
    add_backend(p)
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--threads", type=int, help=threads_help)
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=precision_help)


def add_scale_options(p, rescale_help: str, crop_help: str) -> None:
    """--no-rescale and --no-fov-crop: the runtime's input scaling and FOV crop, on by default."""
    p.add_argument("--no-rescale", action="store_true", help=rescale_help)
    p.add_argument("--no-fov-crop", action="store_true", help=crop_help)


def add_max_pixels(p, what: str) -> None:
    from fundus_edge.runtime.limits import DEFAULT_MAX_PIXELS

    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"largest image in pixels, width x height (default {DEFAULT_MAX_PIXELS:,}: 40 MP, above any "
        f"fundus camera); {what}",
    )


def add_platform_args(p) -> None:
    """pick's and pack's --platform and --any-arch."""
    p.add_argument(
        "--platform",
        help="the device's platform: linux-x86_64 or linux-aarch64 (default: this machine's)",
    )
    p.add_argument(
        "--any-arch",
        action="store_true",
        help="use a record measured on another architecture than the device's",
    )


def load_predictor(model, a: argparse.Namespace):
    """``predict``'s and ``serve``'s model: a bundle of candidates runs the choice ``selftest`` recorded for
    this CPU (made now when none stands: deploy.choose.ensure_choice), said on stderr; anything else loads as
    given, with the verb's engine, device, threads, precision and scale options."""
    import sys

    from fundus_edge.deploy.choose import ensure_choice
    from fundus_edge.runtime.predictor import Predictor, ScaleOptions

    chose = ensure_choice(model)
    pred = Predictor.load(
        model,
        backend=a.backend,
        device=a.device,
        threads=a.threads,
        precision=a.precision,
        scale=ScaleOptions(rescale=not a.no_rescale, crop_fov=not a.no_fov_crop),
    )
    if pred.bundle_choice:
        print(chose or pred.bundle_choice.line, file=sys.stderr)
    return pred


def write_per_image(a: argparse.Namespace, report) -> None:
    """``--per-image-out FILE``: the report with its per-image statistics as JSON (refused over an existing
    file without ``--force``), so intervals and paired comparisons are recomputed later without reading
    the images again (python -m fundus_edge.measure.intervals; modelcard --update perturbations)."""
    import json
    from pathlib import Path

    if not a.per_image_out:
        return
    out = Path(a.per_image_out)
    if out.exists() and not a.force:
        raise FundusEdgeError(f"{out}: exists (pass --force to overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report.to_dict(with_stats=True), separators=(",", ":")) + "\n")
