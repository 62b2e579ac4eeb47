"""``fundus-edge serve``: HTTP over one model (the work is fundus_edge.serve.app; the extra
fundus-edge[serve])."""

from __future__ import annotations

import sys
from pathlib import Path

from fundus_edge.runtime.errors import FundusEdgeError

from .common import add_engine_options, add_max_pixels, add_scale_options, load_predictor
from .models import PREDICT_MODEL, default_model_dir


def add(sub) -> None:
    s = sub.add_parser(
        "serve",
        help="HTTP service over one model: POST /v1/segment, GET /health, GET /v1/model, a page at / "
        "(extra: fundus-edge[serve])",
    )
    s.add_argument("model", nargs="?", help=f"model folder (default: {PREDICT_MODEL}/ of --models)")
    s.add_argument("--models", help="folder of the shipped models when no model folder is given")
    s.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 for every interface)",
    )
    s.add_argument("--port", type=int, default=8000)
    add_engine_options(
        s, threads_help="engine threads, as for predict", precision_help="as for predict (default auto)"
    )
    add_scale_options(s, rescale_help="as for predict", crop_help="as for predict")
    s.add_argument(
        "--queue",
        type=int,
        default=4,
        help="requests that may wait for the engine besides the one it runs (default 4); more get 429 "
        "with Retry-After",
    )
    s.add_argument(
        "--max-body-mb",
        type=float,
        default=32.0,
        help="largest request body in MiB (default 32); larger get 413",
    )
    add_max_pixels(s, "an upload whose header declares more gets 413 before it is queued")
    s.add_argument(
        "--overcommit",
        action="store_true",
        help="start even when the worst-case memory (bodies of the queue, one image at --max-pixels) is over "
        "this machine's",
    )
    s.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level",
    )
    s.set_defaults(func=run)


def run(a) -> int:
    try:
        import uvicorn

        from fundus_edge.serve.app import ServeOptions, create_app, worst_case
    except ImportError as exc:
        raise FundusEdgeError(
            f"serve needs the serve extra ({exc.name} is missing): pip install 'fundus-edge[serve]'"
        ) from None

    if a.queue < 0 or a.max_body_mb <= 0 or a.max_pixels < 1:
        raise FundusEdgeError(
            "--queue must be 0 or more, --max-body-mb above 0 and --max-pixels at least 1"
            f" (got {a.queue}, {a.max_body_mb:g} and {a.max_pixels})"
        )
    options = ServeOptions(
        max_body_bytes=int(a.max_body_mb * (1 << 20)), queue=a.queue, max_pixels=a.max_pixels
    )
    worst = worst_case(options)
    if not worst.fits and not a.overcommit:
        raise FundusEdgeError(
            f"{worst.line(options)}: over this machine's memory; lower --queue, --max-body-mb or"
            " --max-pixels, or start anyway with --overcommit"
        )
    print(worst.line(options), file=sys.stderr)
    model = Path(a.model) if a.model else default_model_dir(a.models)
    pred = load_predictor(model, a)
    app = create_app(pred, options)
    print(
        f"serving {model} ({pred.manifest.name}, {pred.manifest.variant}) on {pred.backend}, "
        f"{pred.precision_line()}, at http://{a.host}:{a.port}/ "
        f"(queue {a.queue}, body limit {a.max_body_mb:g} MiB)",
        file=sys.stderr,
    )
    uvicorn.run(app, host=a.host, port=a.port, log_level=a.log_level, workers=1)
    return 0
