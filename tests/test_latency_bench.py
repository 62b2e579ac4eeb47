"""Per-engine predictor latency with pytest-benchmark: `make bench-pytest` (not part of `make test` or
`make test-all`: marked slow, and skipped unless pytest runs with --benchmark-only).

Runs the shipped models on one 584x565 input (a DRIVE test image when FUNDUS_EDGE_DRIVE is set,
otherwise a synthetic fundus-sized image) through each installed engine, engine call only and end
to end."""

import os
from pathlib import Path

import numpy as np
import pytest
from fundus_edge.measure.timing import TimingPolicy
from fundus_edge.runtime.engines import installed_engines
from fundus_edge.runtime.predictor import Predictor

TIMING = TimingPolicy()  # the bench's warm-up and run count
MODELS = Path(__file__).resolve().parents[1] / "models"
THREADS = int(os.environ.get("OMP_NUM_THREADS", "2"))

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _benchmarks_on_purpose(request):
    # test-all selects slow tests too; minutes of timing belong to `make bench-pytest` alone.
    if not request.config.getoption("benchmark_only", default=False):
        pytest.skip("latency benchmark: run it with `make bench-pytest` (--benchmark-only)")


def _image() -> np.ndarray:
    root = os.environ.get("FUNDUS_EDGE_DRIVE")
    if root and (Path(root) / "test" / "images").is_dir():
        from fundus_edge.runtime.images import read_image

        return read_image(sorted((Path(root) / "test" / "images").iterdir())[0])
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (584, 565, 3)).astype(np.uint8)


@pytest.mark.parametrize("model", ["default", "small"])
@pytest.mark.parametrize("engine", ["onnxruntime", "openvino", "paddle"])
@pytest.mark.parametrize("stage", ["engine", "end_to_end"])
def test_latency(benchmark, model, engine, stage):
    if engine not in installed_engines():
        pytest.skip(f"{engine} not installed")
    p = Predictor.load(MODELS / model, backend=engine, threads=THREADS, precision=None)
    img = _image()
    x, _ = p.prepare(img)
    x = x[None]
    benchmark.extra_info.update(precision=p.precision, device=p.device, threads=THREADS)
    if stage == "engine":
        benchmark.pedantic(p.engine.run, args=(x,), rounds=TIMING.runs, warmup_rounds=TIMING.warmup)
    else:
        benchmark.pedantic(p.predict, args=(img,), rounds=TIMING.runs, warmup_rounds=TIMING.warmup)
