"""Child process of ``import_paddleseg``: load a PaddleSeg inference program, find what its output means,
append what turns it into our output (N x 1 x H x W vessel probability), save it, find the input size
multiple it needs, and print one JSON line.

Run with FLAGS_enable_pir_api=0 for a legacy ``.pdmodel`` (Paddle starts in one mode per process).
argv: program prefix, output prefix, vessel class; or --labels, our program's prefix, output prefix, threshold
(the other way: ``export --paddleseg``)."""

import json
import sys

import numpy as np
import paddle

_SIZES = (8, 16, 32, 64)  # candidate multiples; each tried at 7m x 5m (odd multiples: not multiples of 2m)


def _pir(prog, fetches):
    """(value before the argmax, or the output; what it holds: argmax / softmax / logits)."""
    ops = prog.global_block().ops
    out = fetches[0]
    op = _pir_producer(ops, out)
    kind = "logits"
    if op is not None and op.name() == "pd_op.argmax":
        kind, out = "argmax", op.operand_source(0)
        op = _pir_producer(ops, out)
    if op is not None and op.name() == "pd_op.softmax":
        kind = "softmax" if kind == "logits" else "argmax-of-softmax"
    return out, kind


def _pir_producer(ops, value):
    for op in ops:
        for i in range(op.num_results()):
            if op.result(i).is_same(value):
                return op
    return None


def _legacy(prog, fetches):
    blk = prog.global_block()
    out = fetches[0]

    def producer(name):
        for op in blk.ops:
            if name in op.output_arg_names:
                return op
        return None

    op = producer(out.name)
    kind = "logits"
    if op is not None and op.type in ("arg_max", "argmax"):
        kind, out = "argmax", blk.var(op.input("X")[0])
        op = producer(out.name)
    if op is not None and op.type == "softmax":
        kind = "softmax" if kind == "logits" else "argmax-of-softmax"
    return out, kind


def _onednn_error(prefix: str, channels: int, m: int) -> str | None:
    """Whether Paddle Inference runs the program with oneDNN (the runtime's CPU setting): Paddle 3.3.1 cannot
    run some PIR ops on oneDNN (PaddleSeg UNet's bilinear_interp: "ConvertPirAttribute2RuntimeAttribute not
    support ArrayAttribute<DoubleAttribute>", STACK.md). None when it runs, else the error."""
    from paddle import inference

    cfg = inference.Config(prefix + ".json", prefix + ".pdiparams")
    cfg.disable_glog_info()
    cfg.disable_gpu()
    cfg.enable_mkldnn()
    try:
        pred = inference.create_predictor(cfg)
        h = pred.get_input_handle(pred.get_input_names()[0])
        h.reshape([1, channels, 4 * m, 4 * m])
        h.copy_from_cpu(np.zeros((1, channels, 4 * m, 4 * m), np.float32))
        pred.run()
    except Exception as exc:  # noqa: BLE001
        return str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else type(exc).__name__
    return None


def _feed_vars(prog, name: str) -> list:
    """The feed of ``name`` as save_inference_model wants it: the pd_op.data value (PIR) or the variable."""
    if paddle.framework.in_pir_mode():
        return [
            op.result(0)
            for op in prog.global_block().ops
            if op.name() == "pd_op.data" and op.attrs()["name"] == name
        ]
    return [prog.global_block().var(name)]


def main(src: str, dst: str, vessel_class: int) -> None:
    paddle.enable_static()
    pir = paddle.framework.in_pir_mode()
    exe = paddle.static.Executor(paddle.CPUPlace())
    prog, feeds, fetches = paddle.static.load_inference_model(src, exe)
    if len(feeds) != 1:
        raise SystemExit(
            f"error: {len(feeds)} inputs ({', '.join(feeds)}); a segmentation export has one image input"
        )
    out, kind = (_pir if pir else _legacy)(prog, fetches)
    shape = list(out.shape)
    if len(shape) != 4:
        raise SystemExit(
            f"error: output of rank {len(shape)} ({shape}) before any argmax; expected N x classes x H x W"
        )
    classes = int(shape[1])
    if classes < 2:
        raise SystemExit(
            f"error: the output has {classes} channel(s); a PaddleSeg head gives one per class (2 or more)"
        )
    if not 0 <= vessel_class < classes:
        raise SystemExit(f"error: vessel class {vessel_class} out of range for {classes} classes")
    with paddle.static.program_guard(prog):
        probs = out if "softmax" in kind else paddle.nn.functional.softmax(out, axis=1)
        vessel = paddle.slice(probs, axes=[1], starts=[vessel_class], ends=[vessel_class + 1])
    feed_vars = _feed_vars(prog, feeds[0])
    in_shape = list(feed_vars[0].shape)
    channels = int(in_shape[1])
    paddle.static.save_inference_model(dst, feed_vars, [vessel], exe, program=prog)
    # The input size multiple the network needs: the smallest that runs and gives an output of the input's
    # size.
    prog2, feeds2, fetches2 = paddle.static.load_inference_model(dst, exe)
    multiple, tried = None, []
    for m in _SIZES:
        h, w = 7 * m, 5 * m
        try:
            r = exe.run(
                prog2,
                feed={
                    feeds2[0]: np.random.default_rng(0).standard_normal((1, channels, h, w)).astype("float32")
                },
                fetch_list=fetches2,
            )[0]
        except Exception as exc:  # noqa: BLE001 - a size the network cannot take
            tried.append(f"{h}x{w}: {str(exc).strip().splitlines()[-1][:120]}")
            continue
        if tuple(r.shape) == (1, 1, h, w) and np.isfinite(r).all() and r.min() >= 0 and r.max() <= 1:
            multiple = m
            break
        tried.append(f"{h}x{w}: output {tuple(r.shape)}")
    onednn = _onednn_error(dst, channels, multiple or 8) if pir else None
    print(
        json.dumps(
            {
                "onednn_error": onednn,
                "output": kind,
                "classes": classes,
                "in_channels": channels,
                "input_name": feeds[0],
                "pad_multiple": multiple,
                "tried": tried,
                "pir": pir,
            }
        )
    )


def to_labels(src: str, dst: str, threshold: float) -> None:
    """Our probability program -> PaddleSeg's argmax convention: an int32 N x H x W label map (1 = vessel,
    prob >= threshold), which PaddleSeg's infer.py and FastDeploy's PaddleSeg model take as output_op
    argmax."""
    paddle.enable_static()
    exe = paddle.static.Executor(paddle.CPUPlace())
    prog, feeds, fetches = paddle.static.load_inference_model(src, exe)
    with paddle.static.program_guard(prog):
        labels = paddle.squeeze(
            paddle.cast(paddle.greater_equal(fetches[0], paddle.full([1], threshold, "float32")), "int32"),
            axis=[1],
        )
    paddle.static.save_inference_model(dst, _feed_vars(prog, feeds[0]), [labels], exe, program=prog)
    print(json.dumps({"labels": True}))


if __name__ == "__main__":
    if sys.argv[1] == "--labels":
        to_labels(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
