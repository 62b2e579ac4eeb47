"""The ``fundus-edge`` command: parse arguments, call the Python API, print. Nothing else.

One module per verb, each with ``add(subparsers)`` (its options) and ``run(args)`` (its command); what the
verbs share (threads, engine options, one-line errors) is cli/common.py. A verb module imports nothing
above the runtime when the parser is built: the device's ``selftest`` runs with the runtime alone.
"""

from __future__ import annotations

import argparse

from . import (
    adapt,
    average,
    bench,
    biomarkers,
    evaluate,
    export,
    import_paddleseg,
    pack,
    pick,
    predict,
    quantize,
    selftest,
    serve,
    train,
    validate,
)
from .common import run_verb

# The verbs in the order `fundus-edge --help` lists them.
VERBS = (
    train,
    average,
    evaluate,
    export,
    validate,
    quantize,
    import_paddleseg,
    bench,
    pick,
    pack,
    selftest,
    predict,
    biomarkers,
    serve,
    adapt,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fundus-edge", description="Retinal-vessel segmentation from training to screening devices."
    )
    sub = p.add_subparsers(dest="command", required=True)
    for verb in VERBS:
        verb.add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_verb(build_parser().parse_args(argv))
