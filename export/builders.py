"""One builder per row of ``fundus_edge.runtime.formats.FORMATS``.

PIR is Paddle 3's default save format. The legacy program needs ``FLAGS_enable_pir_api=0`` set
before Paddle starts (``paddle.set_flags`` at run time does not switch ``jit.save``, measured with
Paddle 3.3.1), so it is saved in a child process. ONNX comes from the legacy program through
paddle2onnx 1.3.1, which also converts PaddleSlim's quantised programs (2.1.0 does not: STACK.md).
"""

from __future__ import annotations

from pathlib import Path

from fundus_edge.runtime.errors import ModelError
from fundus_edge.runtime.formats import FORMATS

INPUT_NAME = "image"


def input_spec(in_channels: int):
    from paddle.static import InputSpec

    return [InputSpec([None, in_channels, None, None], "float32", INPUT_NAME)]


def strip_callstacks(pdmodel: Path) -> int:
    """Drop the Python call stacks Paddle records in a legacy program's ops (its feed and fetch ops carry
    the exporting machine's absolute paths to legacy_child.py and the venv's site-packages). They are
    debugging text only; the program runs the same without them. Returns the ops stripped."""
    from paddle.base.proto import framework_pb2

    desc = framework_pb2.ProgramDesc()
    desc.ParseFromString(Path(pdmodel).read_bytes())
    stripped = 0
    for block in desc.blocks:
        for op in block.ops:
            keep = [a for a in op.attrs if a.name != "op_callstack"]
            if len(keep) != len(op.attrs):
                del op.attrs[:]
                op.attrs.extend(keep)
                stripped += 1
    if stripped:
        Path(pdmodel).write_bytes(desc.SerializeToString())
    return stripped


def save_pir(net, cfg, out_dir: Path, opset: int = 13) -> None:
    import paddle
    from fundus_edge.train.model import VesselProbability

    wrapped = VesselProbability(net)
    wrapped.eval()
    stem = Path(FORMATS["pir"].files[0]).stem
    paddle.jit.save(wrapped, str(out_dir / stem), input_spec=input_spec(cfg.preprocess.in_channels))
    _check_written(out_dir, "pir")


def save_legacy(net, cfg, out_dir: Path, opset: int = 13) -> None:
    """Save the legacy program of ``net`` in a child process with PIR switched off.

    The weights travel as a plain .npz (no pickle) with the config, so the child rebuilds the same
    network, pruned shapes included."""
    import tempfile

    import numpy as np
    from fundus_edge.train.config import dump_config

    from .child import run_child

    stem = Path(FORMATS["legacy"].files[0]).stem
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "weights.npz", **{k: v.numpy() for k, v in net.state_dict().items()})
        (Path(tmp) / "config.yaml").write_text(dump_config(cfg))
        run_child(
            "fundus_edge.export.legacy_child",
            (tmp, out_dir / stem),
            pir=False,
            what=f"{out_dir}: legacy export failed",
        )
    info = out_dir / f"{stem}.pdiparams.info"
    if info.exists():
        info.unlink()  # a pickle that no engine needs
    _check_written(out_dir, "legacy")


def legacy_to_onnx(out_dir: Path, opset: int = 13, deploy_backend: str = "onnxruntime") -> None:
    model, params = (out_dir / f for f in FORMATS["legacy"].files)
    program_to_onnx(model, params, out_dir / FORMATS["onnx"].files[0], opset, deploy_backend)


def program_to_onnx(
    model: Path, params: Path, target: Path, opset: int = 13, deploy_backend: str = "onnxruntime"
) -> None:
    """A Paddle inference program (legacy ``.pdmodel`` or PIR ``.json``) -> ONNX whose output is named
    "prob"."""
    import onnx
    import paddle2onnx

    try:
        paddle2onnx.export(
            str(model),
            str(params),
            save_file=str(target),
            opset_version=opset,
            auto_upgrade_opset=True,
            verbose=False,
            enable_onnx_checker=True,
            deploy_backend=deploy_backend,
        )
    except Exception as exc:  # paddle2onnx raises bare Exceptions from C++
        raise ModelError(f"{model}: paddle2onnx failed: {exc}") from None
    if not target.is_file() or target.stat().st_size == 0:
        raise ModelError(f"{model}: paddle2onnx wrote no model")
    m = onnx.load(str(target))
    onnx.checker.check_model(m)
    # paddle2onnx names the output after an internal tensor; give it a stable name.
    old = m.graph.output[0].name
    if old != "prob":
        for node in m.graph.node:
            node.output[:] = ["prob" if o == old else o for o in node.output]
        m.graph.output[0].name = "prob"
        onnx.save(m, str(target))


def _check_written(out_dir: Path, fmt: str) -> None:
    missing = [f for f in FORMATS[fmt].files if not (out_dir / f).is_file()]
    if missing:
        raise ModelError(f"{out_dir}: {fmt} export wrote no {', '.join(missing)}")


def build_onnx(net, cfg, out_dir: Path, opset: int = 13) -> None:
    legacy_to_onnx(out_dir, opset)


# One builder per exportable row of FORMATS, all called as builder(net, config, out_dir, opset).
BUILDERS = {"pir": save_pir, "legacy": save_legacy, "onnx": build_onnx}


def saved_param_order(net, prefix: Path) -> list[str]:
    """Structured names of ``net``'s state in the order ``paddle.jit.load`` returns the saved tensors.

    ``jit.load`` names them param_0, param_1, ... in an order of its own, so a model folder alone could
    not seed fine-tuning (pruning, QAT). Each saved tensor is matched to the network's by shape and
    value; tensors equal in both are interchangeable, so ties may go either way.
    """
    import numpy as np
    import paddle

    loaded = paddle.jit.load(str(prefix))
    own = {k: v.numpy() for k, v in net.state_dict().items()}
    free = dict(own)
    order = []
    for _, t in sorted(
        loaded.state_dict().items(),
        key=lambda kv: int(kv[0].split("_")[-1]) if kv[0].split("_")[-1].isdigit() else 0,
    ):
        a = t.numpy()
        match = next((k for k, v in free.items() if v.shape == a.shape and np.array_equal(v, a)), None)
        if match is None:
            raise ModelError(f"{prefix}: saved tensor of shape {a.shape} matches no weight of the network")
        order.append(match)
        del free[match]
    return order
