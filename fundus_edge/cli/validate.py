"""``fundus-edge validate``: check a model folder's lower precisions (fundus_edge.export.validate)."""

from __future__ import annotations


def add(sub) -> None:
    v = sub.add_parser(
        "validate",
        help="check a model folder's lower precisions (OpenVINO bf16 / fp16; an INT8 folder's own) on the "
        "DRIVE training images against fp32 through the same engine; record them in its manifest for "
        "--precision auto",
    )
    v.add_argument("models", nargs="+", metavar="MODEL_DIR")
    v.add_argument(
        "--data", required=True, help="DRIVE folder (its 20 training images are read; never the test set)"
    )
    v.add_argument(
        "--engines",
        help="comma list (default: every installed engine that reads the model; an INT8 folder: the engine "
        "its quantizer targets)",
    )
    v.add_argument("--reference", help="an INT8 folder's float model (default: the one its manifest records)")
    v.add_argument("--threads", type=int)
    v.add_argument("--dry-run", action="store_true", help="print the checks, do not write the manifest")
    v.set_defaults(func=run)


def run(a) -> int:
    from fundus_edge.export.validate import validate

    engines = [e.strip() for e in a.engines.split(",") if e.strip()] if a.engines else None
    for model in a.models:
        checks = validate(
            model, a.data, engines=engines, threads=a.threads, reference=a.reference, write=not a.dry_run
        )
        if checks and not a.dry_run:
            print(f"{model}: {len(checks)} precision check(s) recorded in its manifest (validated)")
    return 0
