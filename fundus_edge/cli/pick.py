"""``fundus-edge pick``: the fastest row of a bench record that meets the bounds (fundus_edge.deploy.pick)."""

from __future__ import annotations

from .common import add_platform_args


def add(sub) -> None:
    k = sub.add_parser(
        "pick",
        help="from a bench record, the fastest variant x engine x precision that meets the bounds, "
        "on this CPU",
    )
    k.add_argument(
        "--record",
        default="build/bench/results.json",
        help="bench record (results.json; default build/bench/results.json)",
    )
    k.add_argument("--min-f1", type=float, default=0.82, help="least pooled F1 on DRIVE test (default 0.82)")
    k.add_argument("--max-ms", type=float, help="largest engine p50 in ms")
    k.add_argument("--max-mb", type=float, help="largest model size in MB (the files the engine reads)")
    k.add_argument(
        "--any-cpu",
        action="store_true",
        help="pick from a record measured on a CPU whose flags differ from this one's",
    )
    add_platform_args(k)
    k.set_defaults(func=run)


def run(a) -> int:
    from fundus_edge.deploy.pick import Bounds, choice_key, pick, read_record, table
    from fundus_edge.deploy.platforms import get_platform

    rec = read_record(a.record)
    target = get_platform(a.platform)
    rows = pick(
        rec, Bounds(a.min_f1, a.max_ms, a.max_mb), any_cpu=a.any_cpu, target=target, any_arch=a.any_arch
    )
    print(
        f"from {rec.path} ({rec.cpu}; {rec.meta.get('images', '')}): {len(rows)} rows meet the bounds, "
        "fastest first"
    )
    print(table(rows))
    print(
        f"picked {choice_key(rows[0])}: "
        f"fundus-edge pack {choice_key(rows[0])} --record {rec.path} --out bundle"
        + (f" --platform {a.platform}" if a.platform else "")
        + (" --any-arch" if a.any_arch else "")
    )
    return 0
