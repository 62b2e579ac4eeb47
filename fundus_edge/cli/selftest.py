"""``fundus-edge selftest``: on the device, check a bundle (fundus_edge.deploy.selftest; runtime alone)."""

from __future__ import annotations

import sys


def add(sub) -> None:
    st = sub.add_parser(
        "selftest",
        help="on the device: check a bundle's hashes, CPU, goldens and speed; PASS or FAIL (exit 0 / 1)",
    )
    st.add_argument("bundle", metavar="BUNDLE")
    st.add_argument("--runs", type=int, default=10, help="timed runs (default 10)")
    st.add_argument("--threads", type=int, help="engine threads (default: the bundle's)")
    st.add_argument(
        "--recheck", action="store_true", help="a bundle of candidates: time them all again and choose again"
    )
    st.add_argument("-v", "--verbose", action="store_true", help="also each check's figures (stderr)")
    st.set_defaults(func=run)


def run(a) -> int:
    from fundus_edge.deploy.selftest import selftest

    r = selftest(a.bundle, runs=a.runs, threads=a.threads, recheck=a.recheck)
    if a.verbose:
        for n in r.notes:
            print(f"  {n}", file=sys.stderr)
    print(r.line)
    return 0 if r.passed else 1
