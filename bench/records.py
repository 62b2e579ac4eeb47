"""One frozen record per variant x engine cell; reports read records only."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

STATUSES = ("ok", "export_failed", "run_failed", "wrong_output")


@dataclass(frozen=True)
class BenchRecord:
    variant: str
    backend: str
    precision: str | None = None  # what actually ran, read back from the engine
    precision_requested: str | None = None  # an explicit request (OpenVINO bf16 rows); None: the model's own
    device: str | None = None
    format: str | None = None  # the model file the engine read (pir, legacy, onnx)
    note: str | None = None  # e.g. the engine's preferred format failed and the next one ran
    threads: int | None = None
    status: str = "ok"
    error: str | None = None
    size_mb: float | None = None
    params: int | None = None
    gflops: float | None = None  # per image at 584x565 (2 x GMAC)
    input_hw: str | None = (
        None  # network input actually run for a DRIVE image ("HxW": rescaled, FOV-cropped, padded)
    )
    load_ms: float | None = None
    first_ms: float | None = None
    p50_ms: float | None = None  # engine only; the median of the rounds' p50s
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    e2e_p50_ms: float | None = None  # preprocessing + engine + postprocessing
    throughput_ips: float | None = None
    batch_size: int | None = None
    peak_rss_mb: float | None = None
    f1: float | None = None
    iou: float | None = None
    auc: float | None = None
    acc: float | None = None
    se: float | None = None
    sp: float | None = None
    # 95 % bootstrap intervals over the test images (measure/intervals.py: 2000 resamples, percentile)
    f1_low: float | None = None
    f1_high: float | None = None
    iou_low: float | None = None
    iou_high: float | None = None
    auc_low: float | None = None
    auc_high: float | None = None
    # each scored image's (TP, FP, FN, TN) inside its FOV, in image-name order: what a paired comparison of
    # two rows of one run resamples (bench/compare.py accuracy)
    per_image_counts: tuple[tuple[int, int, int, int], ...] | None = None
    agreement: float | None = (
        None  # vessel Dice of this cell's masks and the reference engine's, every test image pooled
    )
    agreement_float: float | None = None  # the same against the float model a quantized variant came from
    gflops_per_s: float | None = None
    roofline_frac: float | None = None
    timed_runs: int | None = None  # over all rounds
    rounds: int | None = None  # rounds that timed this cell (the accuracy pass is the first)
    round_p50_ms: tuple[float | None, ...] | None = (
        None  # each round's p50 in round order (None: that round failed)
    )
    # the reported spread, %: round_spread_pct plus the run's offset from the machine's usual speed
    spread_pct: float | None = None
    round_spread_pct: float | None = None  # (slowest - fastest round's p50) / p50, in %
    unsteady: bool | None = (
        None  # round spread above fundus_edge.measure.timing.SPREAD_LIMIT: the p50 is not a steady figure
    )
    # the model folder the cell ran and its manifest's sha256 (which pins every file): what `pack` bundles
    model_dir: str | None = None
    model_sha256: str | None = None
    # the engine's input shapes: "dynamic", "static per input size" (OpenVINO), "static 560x568 (batch 1)"
    shape: str | None = None
    shape_requested: str | None = (
        None  # "static" / "dynamic": a shape row beside the engine's own (one model per engine)
    )
    # the cell whose masks the biomarkers are compared with: the float model's fp32 reference-engine cell
    biomarker_ref: str | None = None
    biomarker_mad_pct: dict | None = (
        None  # biomarker -> mean |this - reference| / mean |reference| over the test images, %
    )
    biomarker_worst: str | None = (
        None  # the biomarker farthest out relative to its tolerance (measure/tolerance.py)
    )
    biomarker_worst_pct: float | None = None  # its difference, %
    biomarker_flag: tuple[str, ...] | None = None  # biomarkers beyond tolerance (empty: none)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> BenchRecord:
        names = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        if d.get("round_p50_ms") is not None:  # a list once through JSON
            d["round_p50_ms"] = tuple(d["round_p50_ms"])
        if d.get("per_image_counts") is not None:
            d["per_image_counts"] = tuple(tuple(c) for c in d["per_image_counts"])
        if d.get("biomarker_flag") is not None:
            d["biomarker_flag"] = tuple(d["biomarker_flag"])
        return cls(**d)
