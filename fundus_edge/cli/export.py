"""``fundus-edge export``: checkpoint or model folder -> model folder (the work is fundus_edge.export)."""

from __future__ import annotations

from fundus_edge.runtime.errors import FundusEdgeError


def add(sub) -> None:
    x = sub.add_parser(
        "export", help="checkpoint or model folder -> model folder (Paddle PIR, legacy, ONNX + manifest)"
    )
    x.add_argument("source", help="training checkpoint folder (e.g. runs/default/best) or FP32 model folder")
    x.add_argument("--out", required=True)
    x.add_argument("--formats", default="pir,legacy,onnx", help="comma-separated: pir, legacy, onnx")
    x.add_argument("--name")
    x.add_argument("--opset", type=int, default=13)
    x.add_argument(
        "--threshold",
        type=float,
        help="store this threshold instead of the checkpoint's (recorded in the manifest's source)",
    )
    x.add_argument(
        "--paddleseg",
        action="store_true",
        help="also write PaddleSeg's deploy files: deploy.yaml + paddleseg.json (int32 label map, "
        "output_op argmax) for PaddleSeg's deploy path "
        "(with `import fundus_edge.export.paddleseg_transforms`)",
    )
    x.add_argument("--force", action="store_true")
    x.set_defaults(func=run)


def run(a) -> int:
    from fundus_edge.export.exporter import export_checkpoint

    formats = tuple(f.strip() for f in a.formats.split(",") if f.strip())
    if a.paddleseg and "pir" not in formats:
        raise FundusEdgeError("--paddleseg is built from the PIR program: include pir in --formats")
    r = export_checkpoint(
        a.source, a.out, name=a.name, formats=formats, force=a.force, opset=a.opset, threshold=a.threshold
    )
    print(
        f"exported {', '.join(r.formats)} to {r.model_dir} ({r.params:,} parameters, "
        f"{r.gmac:.2f} GMAC at 584x565, {r.size_mb:.2f} MB)"
    )
    if a.paddleseg:
        from fundus_edge.export.paddleseg import write_paddleseg_deploy

        d = write_paddleseg_deploy(r.model_dir)
        print(
            f"PaddleSeg deploy files: {d} (+ paddleseg.json, paddleseg.pdiparams; "
            "PaddleSeg needs `import fundus_edge.export.paddleseg_transforms`)"
        )
    return 0
