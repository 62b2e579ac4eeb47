"""The sweep: every variant x engine through the runtime's Predictor, timed in rounds.

A shared machine drifts: the AMX Xeon's bench read the default's OpenVINO bf16 row at 37.8 ms and, alone
half an hour later, 24.1 ms, so a ratio of two rows timed minutes apart measured the machine as much as the
models. Each cell is therefore timed in ``BenchConfig.rounds`` rounds spread over the run, and every round
visits every cell:

- Round 1 is the accuracy pass, one process per cell as before (peak memory is the cell's own, a crashing
  engine is one failed row): load, score the 20 test images (they are the timed runs), masks, batch rate.
- Rounds 2.. time only, in one process per engine per round that loads each of that engine's cells in turn
  (the format the accuracy pass ran), warms up and times the images exactly as round 1 did. A process per
  cell per round would pay Python's start and the engine's import again for every cell (1.1 s for the
  runtime, +1.1 s OpenVINO, +3.4 s Paddle on the 2-core VM, about what a whole round of a small model's
  timing costs); a process kept per cell across rounds would hold 60 models' memory at once. A crash
  loses that cell's round only: the round restarts its process after it.
- Within a round the cells of one engine run together, a float model beside the INT8 variants made from
  it, so the rows a ratio compares are timed within a minute or two of each other; odd rounds run the
  whole order backwards, so no cell always sits at a round's start or end.

A row's p50 is the median of its rounds' p50s (p90 and e2e p50 likewise; mean, std and p99 over the pooled
runs); ``round_spread_pct`` is the range of the rounds' p50s over that median, ``spread_pct`` that plus the
run's offset from the machine's usual speed (``apply_rounds``), and a row whose rounds range above
``fundus_edge.measure.timing.SPREAD_LIMIT`` (20 %) is flagged ``unsteady`` with a note. It is flagged, not
re-timed: more rounds cannot narrow a range already seen, and dropping the rounds that disagree would be
choosing the answer. Ratios between rows (reports) are the median of the per-round ratios: every ok row was
timed in the same rounds, so a slow stretch that lands on one round divides out.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from fundus_edge.export.child import failure_line, run_child
from fundus_edge.measure.timing import Rounds, Timing
from fundus_edge.quantize.variants import DEFAULT_BENCH, float_counterpart
from fundus_edge.runtime.cpu import precision_flag
from fundus_edge.runtime.engines import gpu_engines, installed_engines
from fundus_edge.runtime.engines.table import ENGINE_TABLE, reduced
from fundus_edge.runtime.formats import formats_for
from fundus_edge.runtime.manifest import read_manifest

from .cell import CellSpec, RoundSpec

DRIVE_SIZE = (584, 565)


@dataclass(frozen=True)
class BenchConfig:
    data: str | None
    out: Path
    threads: int = 2
    quick: bool = False
    models_dir: Path = Path("build/models")
    shipped: Path = Path("models")  # the shipped models (the CLI resolves --models)
    variants: tuple[str, ...] = DEFAULT_BENCH  # the variant table's rows marked default_bench
    engines: tuple[str, ...] | None = None
    # model folders benchmarked beside the variants (ours or imported), each a variant named after its folder
    extra: tuple[Path, ...] = ()
    bf16_rows: bool = True
    gpu_rows: bool = True  # also a GPU row per variant for each engine that has a GPU here
    warmup: int = 3
    runs: int = 30
    min_runs: int = 5
    budget_s: float = 12.0
    batch: int = 4
    finetune_iters: int = 800
    build: bool = True
    rounds: int = 4  # timing rounds per cell, the accuracy pass the first (see the module's docstring)
    window_s: float = 1.0  # each round times a scored cell for at least this long (cell.timing_policy)
    shape_variant: str | None = (
        "small"  # the model whose static-against-dynamic rows are timed (shape_rows()); None: none
    )

    def effective(self) -> BenchConfig:
        if self.quick:
            return replace(
                self,
                warmup=1,
                runs=5,
                min_runs=3,
                budget_s=3.0,
                batch=2,
                rounds=min(self.rounds, 2),
                window_s=min(self.window_s, 0.2),
            )
        return self


# Static against dynamic input shapes, for one model per engine (BenchConfig.shape_variant): each engine's
# row of the other kind beside its own. ONNX Runtime runs dynamic dims by default, so its extra row fixes
# them (1 x C x H x W at the largest network input of the test images, smaller ones padded); OpenVINO
# compiles each input shape statically by default, so its extra row compiles the model's dynamic dims once.
# Which row each engine has, or why none, is the engine table's (EngineSpec.shape_row / shape_skipped).
def shape_rows() -> dict[str, str]:
    """engine -> the kind of its extra shape row ("static" | "dynamic"), for the engines that have one."""
    return {n: e.shape_row for n, e in ENGINE_TABLE.items() if e.shape_row}


def shape_skipped() -> dict[str, str]:
    """engine -> why it has no extra shape row (the engines that say why)."""
    return {n: e.shape_skipped for n, e in ENGINE_TABLE.items() if not e.shape_row and e.shape_skipped}


PROBE_EVERY = 15  # cells of the accuracy pass (round 1, most of the run) between two speed probes


@dataclass(frozen=True)
class Cell:
    variant: str
    model_dir: Path
    backend: str
    precision: str | None = None  # an explicit precision request (OpenVINO bf16 row)
    device: str = "cpu"
    shape: str | None = None  # "static" / "dynamic": a shape_rows() row; None: the engine's own shapes

    @property
    def key(self) -> str:
        return cell_key(self.variant, self.backend, self.precision, self.device, self.shape)


def cell_key(
    variant: str,
    backend: str,
    precision: str | None = None,
    device: str | None = "cpu",
    shape: str | None = None,
) -> str:
    """variant/engine[/precision][/gpu][/static|/dynamic]: a cell's name in the sweep and its temporary
    files."""
    return (
        f"{variant}/{backend}"
        + (f"/{precision}" if precision else "")
        + ("/gpu" if str(device or "").startswith("gpu") else "")
        + (f"/{shape}" if shape else "")
    )


# -- images --------------------------------------------------------------------------------------
def synthetic_fundus(rng: np.random.Generator) -> np.ndarray:
    """A DRIVE-sized RGB image: noise inside a disc on black, so the runtime finds a field of view."""
    h, w = DRIVE_SIZE
    yy, xx = np.mgrid[:h, :w]
    img = rng.integers(0, 255, (h, w, 3)).astype(np.uint8)
    img[(yy - h / 2) ** 2 + (xx - w / 2) ** 2 >= (min(h, w) / 2 - 10) ** 2] = 0
    return img


def prepare_images(cfg: BenchConfig, path: Path) -> tuple[int, str]:
    """An .npz of test images (+ labels and FOV masks with DRIVE); returns (count, description). The
    description names the data folder as committed pages may (no machine path: measure.ledger.portable)."""
    from fundus_edge.measure.ledger import portable

    if cfg.data and Path(cfg.data).exists():
        from fundus_edge.train.data import discover, load_sample

        samples = discover(cfg.data, split="test")
        if cfg.quick:
            samples = samples[:3]
        arrays = {}
        for i, s in enumerate(samples):
            ls = load_sample(s)
            arrays[f"img_{i:03d}"], arrays[f"lab_{i:03d}"], arrays[f"fov_{i:03d}"] = ls.rgb, ls.label, ls.fov
        np.savez(path, **arrays)
        return len(
            samples
        ), f"DRIVE test ({len(samples)} images, 1st_manual, FOV pixels pooled) from {portable(cfg.data)}"
    rng = np.random.default_rng(0)
    np.savez(path, **{f"img_{i:03d}": synthetic_fundus(rng) for i in range(3)})
    return 3, "synthetic 584x565 fundus-sized inputs (no DATA: accuracy columns are null)"


# -- sweep ---------------------------------------------------------------------------------------
def plan_cells(dirs: dict, cfg: BenchConfig) -> list[Cell]:
    """Every variant's cells (``dirs``: variant -> model folder): one per engine that reads a format of it
    (``cfg.engines``, or every installed engine of the engine table), its bf16 and GPU rows, and the shape
    rows of ``cfg.shape_variant``."""
    engines = cfg.engines or tuple(installed_engines())
    on_gpu = set(gpu_engines(engines)) if cfg.gpu_rows else set()
    rows = shape_rows()
    cells = []
    for variant, d in dirs.items():
        man = read_manifest(d)
        for e in engines:
            if not formats_for(e, list(man.formats)):
                continue
            cells.append(Cell(variant, d, e))
            # bf16 where the engine can be asked for it and the CPU computes it (OpenVINO: the whole float
            # model, or an INT8 model's float layers, int8+bf16).
            if cfg.bf16_rows and "bf16" in reduced(e) and precision_flag("bf16", engine=e):
                cells.append(Cell(variant, d, e, "bf16"))
            if e in on_gpu:
                cells.append(Cell(variant, d, e, device="gpu"))
        if variant == cfg.shape_variant:
            cells += [
                Cell(variant, d, e, shape=rows[e])
                for e in engines
                if e in rows and formats_for(e, list(man.formats))
            ]
    return cells


def run_cells(
    cells: list[Cell],
    cfg: BenchConfig,
    images: Path,
    n_images: int,
    has_labels: bool,
    tmp: Path,
    progress: bool = True,
    probe=None,
    reference: list[float] | tuple = (),
) -> tuple[list[dict], list[float], list[float]]:
    """Every cell's record (planned order), the wall seconds of each timing round after the first and the
    machine's speed (``probe()``, ms) before round 1, every ``PROBE_EVERY`` cells of it and after each round:
    its offset from ``reference`` (earlier runs' probes) widens every row's spread (``apply_rounds``)."""
    from tqdm import tqdm

    out = []
    refs: dict[str, Path] = {}
    ref_recs: dict[str, dict] = {}
    specs: dict[str, CellSpec] = {}
    # Float variants first, so a quantized variant's cells can be checked against the float model too;
    # the records come back in the planned order.
    planned = {c.key: i for i, c in enumerate(cells)}
    first = sorted(cells, key=lambda c: float_counterpart(c.variant) is not None)
    probes = [probe()] if probe else []
    bar = tqdm(first, desc=f"bench round 1/{cfg.rounds}", unit="cell", disable=not progress)
    for i, cell in enumerate(bar):
        if probe and i and i % PROBE_EVERY == 0:
            probes.append(probe())
        ref = refs.get(cell.variant)
        fref = refs.get(float_counterpart(cell.variant) or "")
        spec = _cell_spec(cell, cfg, images, has_labels, tmp, ref, fref, ref_recs.get(cell.variant))
        specs[cell.key] = spec
        rec = _accuracy_pass(cell, spec, cfg.threads, tmp)
        if ref is None and rec.get("status") == "ok":
            refs[cell.variant] = Path(spec.save_mask)
            ref_recs[cell.variant] = rec
            # the variant's reference engine: the others' agreement and biomarkers are taken against it
            rec["_is_ref"] = True
        out.append(rec)
    if probe:
        probes.append(probe())
    # The later rounds time the cells that came through the accuracy pass.
    timed = {r["_key"]: r for r in out if r.get("status") == "ok" and "_round" in r}
    results: dict[str, list[dict]] = {k: [r["_round"]] for k, r in timed.items()}
    round_s = []
    to_time = [c for c in cells if c.key in timed]
    for k in range(1, cfg.rounds):
        t0 = time.perf_counter()
        with tqdm(
            total=len(to_time), desc=f"bench round {k + 1}/{cfg.rounds}", unit="cell", disable=not progress
        ) as bar:
            for group in timing_order(to_time, k):
                got = run_round_group(
                    [_round_spec(specs[c.key], timed[c.key], c.key, has_labels) for c in group],
                    tmp / f"round{k}",
                    bar.update,
                )
                for c in group:
                    results[c.key].append(got[c.key])
        round_s.append(round(time.perf_counter() - t0, 1))
        if probe:
            probes.append(probe())
    _, offset = machine_terms(probes, reference)
    for key, rec in timed.items():
        apply_rounds(rec, results[key], offset)
    return sorted(out, key=lambda r: planned[r["_key"]]), round_s, probes


def _cell_spec(
    cell: Cell,
    cfg: BenchConfig,
    images: Path,
    has_labels: bool,
    tmp: Path,
    ref: Path | None,
    fref: Path | None,
    ref_rec: dict | None,
) -> CellSpec:
    """The accuracy pass's spec of ``cell``: ``ref`` / ``fref`` the masks of its variant's and its float
    model's reference cells (None: this cell is the first to run), ``ref_rec`` the former's record."""
    stem = cell.key.replace("/", "_")
    return CellSpec(
        variant=cell.variant,
        backend=cell.backend,
        model_dir=str(cell.model_dir),
        precision=cell.precision,
        device=cell.device,
        threads=cfg.threads,
        batch=cfg.batch,
        warmup=cfg.warmup,
        runs=cfg.runs,
        min_runs=cfg.min_runs,
        budget_s=cfg.budget_s,
        window_s=cfg.window_s,
        images=str(images),
        accuracy=has_labels and read_manifest(cell.model_dir).variant != "untrained",
        reference_mask=str(ref) if ref else None,
        save_mask=str(tmp / f"{stem}.masks.npz"),
        float_reference_mask=str(fref) if fref else None,
        save_prob=str(tmp / f"{stem}.prob.npy"),
        shape=cell.shape,
        shapes=_shape_options(cell, ref_rec),
    )


def _accuracy_pass(cell: Cell, spec: CellSpec, threads: int, tmp: Path) -> dict:
    """Run ``spec`` in its own cell process: its record (a crash is a run_failed record) with the sweep's
    own keys (_key, _wall_s, _masks)."""
    sp, rp = tmp / "spec.json", tmp / "rec.json"
    sp.write_text(spec.to_json())
    if rp.exists():
        rp.unlink()
    t0 = time.perf_counter()
    r = run_child("fundus_edge.bench.cell", (sp, rp), check=False)
    if r.returncode != 0 or not rp.exists():
        rec = {
            "variant": cell.variant,
            "backend": cell.backend,
            "threads": threads,
            "status": "run_failed",
            "device": cell.device,
            "error": f"cell process exited {r.returncode}: {failure_line(r)}",
        }
    else:
        rec = json.loads(rp.read_text())
        if rec.get("status") == "ok":
            rec["_masks"] = spec.save_mask
    rec["_key"] = cell.key
    rec["_wall_s"] = round(time.perf_counter() - t0, 1)
    return rec


def _shape_options(cell: Cell, ref: dict | None) -> dict | None:
    """The engine's shape options for a shape_rows() cell: static at the largest network input the variant's
    reference cell ran (every test image fits), or dynamic."""
    if cell.shape == "dynamic":
        return {"dynamic_shape": True}
    if cell.shape == "static":
        return {"static_hw": list(ref["_max_hw"])} if ref and ref.get("_max_hw") else {"static_hw": None}
    return None


def _round_spec(spec: CellSpec, rec: dict, key: str, has_labels: bool) -> RoundSpec:
    """A later round's spec of one cell, from the accuracy pass's spec and record ``rec``."""
    return spec.round_spec(
        key, rec.get("format"), bool(rec.get("_slow")), spec.accuracy and has_labels, bool(rec.get("_heavy"))
    )


def timing_order(cells: list[Cell], k: int) -> list[list[Cell]]:
    """Round ``k``'s cells in the groups that share one process: one group per engine and device, in
    the planned order of engines; within a group the cells of one model family together (a float model and
    the INT8 variants made from it), so the rows a ratio compares are timed close together. Odd rounds run
    everything backwards."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.backend, c.device), []).append(c)
    families: dict[str, int] = {}
    for c in cells:
        families.setdefault(float_counterpart(c.variant) or c.variant, len(families))
    out = [
        sorted(g, key=lambda c: families[float_counterpart(c.variant) or c.variant]) for g in groups.values()
    ]
    if k % 2:
        out = [g[::-1] for g in out[::-1]]
    return out


def run_round_group(specs: list[RoundSpec], tmp: Path, advance=lambda n: None) -> dict[str, dict]:
    """Time ``specs`` (one engine's cells) in one process; a crash costs the cell that crashed its round,
    and a new process times the rest. Returns key -> that round's result."""
    tmp.mkdir(parents=True, exist_ok=True)
    got: dict[str, dict] = {}
    rest = list(specs)
    while rest:
        sp, rp = tmp / "specs.json", tmp / "round.jsonl"
        sp.write_text(json.dumps([s.to_dict() for s in rest]))
        rp.write_text("")
        r = run_child("fundus_edge.bench.cell", ("--round", sp, rp), check=False)
        done = [json.loads(line) for line in rp.read_text().splitlines() if line.strip()]
        for d in done:
            got[d["key"]] = d
        advance(len(done))
        rest = rest[len(done) :]
        if rest:  # the process ended before the next cell's line: that cell crashed it
            crashed = rest.pop(0)
            got[crashed.key] = {
                "key": crashed.key,
                "status": "run_failed",
                "error": f"round process exited {r.returncode}: {failure_line(r)}",
            }
            advance(1)
    return got


def machine_terms(probes: list[float], reference) -> tuple[float | None, float | None]:
    """(range of the run's speed probes over their median, % ; how far their median is from the median of
    ``reference``, the machine's earlier runs, %), None where there is nothing to take it from."""
    import statistics

    spread = Rounds(tuple(probes)).spread if probes else None
    rng = None if spread is None else 100.0 * spread
    if not probes or not reference:
        return rng, None
    ref = statistics.median(reference)
    return rng, 100.0 * abs(statistics.median(probes) - ref) / ref


def apply_rounds(rec: dict, results: list[dict], offset_pct: float | None = None) -> None:
    """The record's timing from its rounds (the accuracy pass first): p50, p90 and e2e p50 the median of
    the rounds' own, mean / std / p99 over the pooled runs, the rounds' p50s, their spread and the flag.
    The reported spread is the rounds' own range plus ``offset_pct``, how far the machine ran from its
    usual speed (its earlier runs' speed probes): a VM 10 % slower for the whole run moves every row 10 %,
    which the rounds alone cannot see. The probe's range over the run is not added: the rounds, spread
    over the run, already meet the machine's slow spells (taking the wider of the two, first tried, made
    every row of a run as wide as the probe's noisiest moment). ``unsteady``: the own range."""
    import statistics

    from fundus_edge.measure.timing import SPREAD_LIMIT

    ok = [r for r in results if r.get("status", "ok") == "ok"]
    rounds = Rounds(tuple(r["p50_ms"] if r.get("status", "ok") == "ok" else None for r in results))
    pooled = Timing(tuple(v for r in ok for v in r["samples_ms"]))
    own = None if rounds.spread is None else 100.0 * rounds.spread
    rec.update(
        p50_ms=rounds.median,
        p90_ms=statistics.median(r["p90_ms"] for r in ok),
        e2e_p50_ms=statistics.median(r["e2e_p50_ms"] for r in ok),
        p99_ms=pooled.p99,
        mean_ms=pooled.mean,
        std_ms=pooled.std,
        timed_runs=pooled.runs,
        rounds=len(ok),
        round_p50_ms=list(rounds.p50s),
        round_spread_pct=own,
        spread_pct=None if own is None else own + (offset_pct or 0.0),
        unsteady=None if rounds.spread is None else rounds.unsteady,
    )
    notes = [
        f"round {i + 1} failed: {r.get('error')}"
        for i, r in enumerate(results)
        if r.get("status", "ok") != "ok"
    ]
    if rounds.unsteady:
        t = rounds.timed
        notes.append(
            f"unsteady: round p50s {min(t):.1f}-{max(t):.1f} ms differ by {100 * rounds.spread:.0f} %"
            f" of the median (limit {100 * SPREAD_LIMIT:.0f} %); the machine's speed drifted,"
            " compare this row with care"
        )
    if notes:
        rec["note"] = "; ".join(([rec["note"]] if rec.get("note") else []) + notes)
