"""Load test of ``fundus-edge serve`` on loopback:
``python -m fundus_edge.serve.loadtest MODEL --images DIR``.

Starts the server as its own process, then for each concurrency level sends up to ``--requests`` raw-body
requests to ``/v1/segment/mask.png`` from that many closed-loop clients (a 429 is counted and its
Retry-After honoured), each level capped at ``--max-seconds``. Reports throughput, p50 / p99 latency of the
answered requests, the 429 and 5xx counts, the server's peak RSS (the kernel's high-water mark, reset per
level where /proc allows) and whether every served mask equals the file ``fundus-edge predict`` writes for
that image, byte for byte."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class LevelResult:
    concurrency: int
    requests: int  # answered, every status
    ok: int
    too_many: int  # 429
    server_errors: int  # 5xx
    other: int  # any other status or a failed connection
    wall_s: float
    throughput_ips: float  # ok answers per second
    p50_ms: float | None  # latency of the ok answers, client side
    p99_ms: float | None
    peak_rss_mb: float | None
    peak_reset: bool  # the high-water mark was reset before this level (else: since the server started)
    masks_equal: int  # ok answers whose mask equals predict's file
    masks_differ: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _reset_hwm(pid: int) -> bool:
    """Writing 5 to clear_refs resets the peak RSS (Linux 4.0+)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def predict_masks(model: str, images: list[Path], backend: str, threads: int, out: Path) -> dict[str, bytes]:
    """What ``fundus-edge predict`` writes for each image: the reference the served masks must equal."""
    cmd = [
        sys.executable,
        "-m",
        "fundus_edge.cli",
        "predict",
        model,
        *map(str, images),
        "-o",
        str(out),
        "--backend",
        backend,
        "--threads",
        str(threads),
        "--no-progress",
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {p.name: (out / f"{p.stem}_mask.png").read_bytes() for p in images}


async def _level(
    base: str,
    bodies: list[tuple[str, bytes]],
    expected: dict[str, bytes],
    concurrency: int,
    total: int,
    max_s: float,
    pid: int,
) -> LevelResult:
    import httpx

    reset = _reset_hwm(pid)
    lat, codes = [], []
    equal = differ = 0
    sent = 0
    t0 = time.perf_counter()
    deadline = t0 + max_s

    async def client(k: int, http: httpx.AsyncClient):
        nonlocal sent, equal, differ
        while sent < total and time.perf_counter() < deadline:
            i = sent
            sent += 1
            name, data = bodies[i % len(bodies)]
            s = time.perf_counter()
            try:
                r = await http.post(f"{base}/v1/segment/mask.png", params={"name": name}, content=data)
            except httpx.HTTPError:
                codes.append(0)
                continue
            codes.append(r.status_code)
            if r.status_code == 200:
                lat.append((time.perf_counter() - s) * 1e3)
                if r.content == expected[name]:
                    equal += 1
                else:
                    differ += 1
            elif r.status_code == 429:
                await asyncio.sleep(float(r.headers.get("retry-after", "1")))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=120.0) as http:
        await asyncio.gather(*(client(k, http) for k in range(concurrency)))
    wall = time.perf_counter() - t0
    codes_a = np.asarray(codes)
    ok = int((codes_a == 200).sum())
    return LevelResult(
        concurrency,
        len(codes),
        ok,
        int((codes_a == 429).sum()),
        int(((codes_a >= 500) & (codes_a < 600)).sum()),
        int(((codes_a != 200) & (codes_a != 429) & ((codes_a < 500) | (codes_a >= 600))).sum()),
        round(wall, 2),
        round(ok / wall, 3) if wall else 0.0,
        round(float(np.percentile(lat, 50)), 1) if lat else None,
        round(float(np.percentile(lat, 99)), 1) if lat else None,
        (round(v, 1) if (v := _vm_hwm_mb(pid)) is not None else None),
        reset,
        equal,
        differ,
    )


def _wait_healthy(base: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"loadtest: the server exited with {proc.returncode} before answering")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"loadtest: no answer from {base}/health within {timeout:.0f} s")


def markdown(results: list[LevelResult], info: dict) -> str:
    head = (
        "| clients | answered | ok | 429 | 5xx | other | wall s | ok img/s | p50 ms | p99 ms | peak RSS MB"
        " | masks = predict's |"
    )
    rows = [
        f"| {r.concurrency} | {r.requests} | {r.ok} | {r.too_many} | {r.server_errors} | {r.other}"
        f" | {r.wall_s:.1f} | {r.throughput_ips:.2f} | "
        f"{r.p50_ms if r.p50_ms is not None else '–'} | {r.p99_ms if r.p99_ms is not None else '–'}"
        f" | {r.peak_rss_mb if r.peak_rss_mb is not None else '–'}"
        f"{'' if r.peak_reset else ' (since start)'} | {r.masks_equal} of {r.ok} |"
        for r in results
    ]
    return "\n".join([info["header"], "", head, "|" + "---|" * 12, *rows]) + "\n"


def _parser() -> argparse.ArgumentParser:
    from fundus_edge.runtime.engines.table import backend_choices

    p = argparse.ArgumentParser(
        prog="python -m fundus_edge.serve.loadtest", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("model", help="model folder to serve")
    p.add_argument("--images", nargs="+", required=True, help="image files or folders (sent in turn)")
    p.add_argument("--requests", type=int, default=300, help="requests per level (default 300)")
    p.add_argument("--concurrency", default="1,2,4,8", help="client counts (default 1,2,4,8)")
    p.add_argument("--max-seconds", type=float, default=120.0, help="cap on one level's time (default 120)")
    p.add_argument(
        "--threads", type=int, default=2, help="the server's engine threads, as for predict (default 2)"
    )
    p.add_argument("--queue", type=int, default=4, help="the server's --queue (default 4)")
    p.add_argument("--backend", default="auto", choices=backend_choices())
    p.add_argument("--json", help="also write the results here")
    return p


def _serve_cmd(a: argparse.Namespace, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fundus_edge.cli",
        "serve",
        a.model,
        "--port",
        str(port),
        "--threads",
        str(a.threads),
        "--queue",
        str(a.queue),
        "--backend",
        a.backend,
    ]


def _run_levels(
    a: argparse.Namespace, images: list[Path], base: str, expected: dict[str, bytes], proc: subprocess.Popen
) -> tuple[str, list[LevelResult]]:
    """(the served engine and precision, one result per concurrency level) against the running server."""
    import httpx

    served = httpx.get(f"{base}/v1/model", timeout=10).json()
    engine = f"{served.get('engine')} {served.get('precision')}"
    bodies = [(f.name, f.read_bytes()) for f in images]
    results = []
    for c in (int(x) for x in a.concurrency.split(",")):
        r = asyncio.run(_level(base, bodies, expected, c, a.requests, a.max_seconds, proc.pid))
        results.append(r)
        print(
            f"clients {c}: {r.ok} ok, {r.too_many} x 429, {r.server_errors} x 5xx"
            f" in {r.wall_s:.1f} s ({r.throughput_ips:.2f} img/s), "
            f"p50 {r.p50_ms} ms, p99 {r.p99_ms} ms, peak RSS {r.peak_rss_mb} MB,"
            f" masks equal {r.masks_equal} of {r.ok}",
            file=sys.stderr,
        )
    return engine, results


def _serve_and_load(a: argparse.Namespace, images: list[Path]) -> tuple[str, list[LevelResult]]:
    """predict's masks first, then the server as its own process for every level; stopped in any case."""
    from fundus_edge.runtime.threads import threads_env

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, **threads_env(a.threads)}
    with tempfile.TemporaryDirectory() as tmp:
        expected = predict_masks(a.model, images, a.backend, a.threads, Path(tmp))
        log = Path(tmp) / "serve.log"
        with open(log, "w") as logf:
            proc = subprocess.Popen(_serve_cmd(a, port), env=env, stdout=subprocess.DEVNULL, stderr=logf)
        try:
            try:
                _wait_healthy(base, proc)
            except SystemExit as exc:
                raise SystemExit(f"{exc}: {log.read_text().strip().splitlines()[-1:] or ''}") from None
            return _run_levels(a, images, base, expected, proc)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _run_info(a: argparse.Namespace, n_images: int, engine: str) -> dict:
    """The machine and the settings of the run, and the header line the table starts with."""
    from fundus_edge.runtime.cpu import cpu_model_and_flags, isa_flags

    cpu, _ = cpu_model_and_flags()
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "isa_flags": isa_flags(),
        "model": a.model,
        "threads": a.threads,
        "queue": a.queue,
        "engine": engine,
        "images": n_images,
        "requests_per_level": a.requests,
        "max_seconds": a.max_seconds,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    info["header"] = (
        f"{cpu}, {info['cores']} cores ({', '.join(info['isa_flags']) or 'no flags of interest'}),"
        " client and server on the same cores; "
        f"`serve {a.model} --threads {a.threads} --queue {a.queue} --backend {a.backend}` ({engine});"
        f" {n_images} images in turn, up to {a.requests} requests "
        f"per level, each level capped at {a.max_seconds:.0f} s; {info['date']}."
    )
    return info


def main(argv: list[str] | None = None) -> int:
    from fundus_edge.runtime.batch import expand_inputs

    a = _parser().parse_args(argv)
    images = expand_inputs(a.images)
    engine, results = _serve_and_load(a, images)
    info = _run_info(a, len(images), engine)
    print(markdown(results, info))
    if a.json:
        Path(a.json).write_text(json.dumps({"info": info, "levels": [asdict(r) for r in results]}, indent=2))
    bad = sum(r.server_errors + r.masks_differ for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
