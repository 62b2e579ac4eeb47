"""Engine and end-to-end time of one model on a DRIVE image and on the same image as a camera frame
(black 4:3 canvas enlarged to 4000x3000), with and without the FOV crop, runs alternating so both
see the same machine state. ``python -m fundus_edge.bench.frames MODEL --data DRIVE``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from fundus_edge.measure.timing import Timing, TimingPolicy


def camera_frame(rgb: np.ndarray, size: tuple[int, int] = (4000, 3000)) -> np.ndarray:
    """``rgb`` centred on a black canvas of the frame's aspect, enlarged to ``size`` (w, h)."""
    h, w = rgb.shape[:2]
    cw = max(w, round(h * size[0] / size[1]))
    canvas = np.zeros((h, cw, 3), np.uint8)
    canvas[:, (cw - w) // 2 : (cw - w) // 2 + w] = rgb
    return cv2.resize(canvas, size, interpolation=cv2.INTER_CUBIC)


# The runs alternate crop on / crop off, so drift between them cancels; warm-up and percentiles are the
# harness's.
FRAME_TIMING = TimingPolicy()


def time_frames(model, images: dict, backend: str, threads: int, runs: int) -> list[dict]:
    from fundus_edge.runtime.predictor import Predictor, ScaleOptions

    preds = {
        crop: Predictor.load(
            model, backend=backend, threads=threads, precision=None, scale=ScaleOptions(crop_fov=crop)
        )
        for crop in (False, True)
    }
    rows = []
    for name, img in images.items():
        eng, e2e, out = {False: [], True: []}, {False: [], True: []}, {}
        for p in preds.values():
            for _ in range(FRAME_TIMING.warmup):
                p.predict(img)
        for _ in range(runs):
            for crop, p in preds.items():
                r = p.predict(img)
                eng[crop].append(r.engine_ms)
                e2e[crop].append(r.total_ms)
                out[crop] = r
        agree = float((out[False].mask == out[True].mask).mean())
        for crop in (False, True):
            rows.append(
                {
                    "image": name,
                    "crop": crop,
                    "input": "x".join(map(str, out[crop].input_hw)),
                    "engine_ms": Timing(tuple(eng[crop])).p50,
                    "e2e_ms": Timing(tuple(e2e[crop])).p50,
                    "mask_agreement": agree,
                }
            )
    return rows


def main(argv=None) -> int:
    from fundus_edge.runtime.engines.table import backend_choices
    from fundus_edge.runtime.images import read_image

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model")
    ap.add_argument("--data", required=True, help="DRIVE folder (its first test image is used)")
    ap.add_argument("--backend", default="openvino", choices=backend_choices())
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=15)
    a = ap.parse_args(argv)
    files = sorted((Path(a.data) / "test" / "images").iterdir())
    if not files:
        print(f"{a.data}: no test images", file=sys.stderr)
        return 2
    rgb = read_image(files[0])
    images = {f"{files[0].name} {rgb.shape[1]}x{rgb.shape[0]}": rgb, "4:3 frame 4000x3000": camera_frame(rgb)}
    print(f"{a.model} on {a.backend}, {a.threads} threads, median of {a.runs} alternating runs")
    print(
        "| image | FOV crop | net input | engine ms | e2e ms | mask agreement |\n"
        "| --- | --- | --- | --- | --- | --- |"
    )
    for r in time_frames(a.model, images, a.backend, a.threads, a.runs):
        print(
            f"| {r['image']} | {'on' if r['crop'] else 'off'} | {r['input']} | {r['engine_ms']:.1f}"
            f" | {r['e2e_ms']:.1f} | {r['mask_agreement']:.5f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
