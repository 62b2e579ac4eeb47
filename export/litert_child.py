"""onnx2tf, run by ``fundus_edge.export.litert`` with the converter venv's Python (``.venv-litert``),
never the project's: onnx2tf and TensorFlow pin numpy 1.26 and protobuf 4, which the project's pins exclude.
So this file imports nothing of fundus_edge, and is run as a script, not a module.

Input: an ONNX copy (onnx2tf overwrites its input with the simplified, fixed-shape model), the input shape
(1,C,H,W), and for INT8 a calibration file: N x H x W x C float32 inputs already preprocessed as the runtime
feeds them (so onnx2tf's own mean / std normalisation is 0 / 1). Output: onnx2tf's files in ``--out``, and
one JSON line on stdout with the converter's versions. A failure ends with an ``error: ...`` line.

With ``--float-ops`` or ``--calib-views`` above 1, onnx2tf writes the float files and its saved model only,
and the INT8 file is TensorFlow's own TFLiteConverter on that saved model, with the same settings as onnx2tf's
full-integer file (per-channel int8 weights, int8 input and output) and: the ops named kept in float
(TensorFlow's QuantizationDebugger with ``denylisted_ops``, the documented way to leave ops unquantized) and
each calibration image also seen flipped and turned (``views``). onnx2tf cannot do either; it also skips
onnx2tf's int16 variants, which the project does not use.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--input", default="image")
    ap.add_argument("--shape", required=True, help="1,C,H,W")
    ap.add_argument("--calib", default="", help="N x H x W x C float32 .npy: also write full-integer INT8")
    ap.add_argument("--float-ops", default="", help="TFLite op names kept in float in the INT8 file")
    ap.add_argument("--calib-views", type=int, default=1, choices=(1, 2, 4), help="views of each image")
    ap.add_argument(
        "--float-layers", default="", choices=("", "first-last"), help="convolutions kept in float"
    )
    a = ap.parse_args(argv)

    import numpy as np
    import onnx2tf
    import tensorflow as tf

    channels = int(a.shape.split(",")[1])
    kw = dict(
        input_onnx_file_path=a.onnx,
        output_folder_path=a.out,
        overwrite_input_shape=[f"{a.input}:{a.shape}"],
        non_verbose=True,
    )
    own_int8 = bool(a.calib) and (bool(a.float_ops) or a.calib_views > 1 or bool(a.float_layers))
    if a.calib and not own_int8:
        zero = np.zeros((1, 1, 1, channels), np.float32)
        kw.update(
            output_integer_quantized_tflite=True,
            quant_type="per-channel",
            input_quant_dtype="int8",
            output_quant_dtype="int8",
            custom_input_op_name_np_data_path=[[a.input, a.calib, zero, zero + 1.0]],
        )
    try:
        onnx2tf.convert(**kw)
    except SystemExit as exc:  # onnx2tf exits on what it cannot convert, after logging why
        print(f"error: onnx2tf stopped (exit {exc.code}) converting {a.onnx}", file=sys.stderr)
        return 1
    if own_int8:
        float_ops = [o for o in a.float_ops.split(",") if o]
        nodes = _first_last_convs(f"{a.out}/model_float32.tflite") if a.float_layers else []
        model = _int8_from_saved_model(a.out, np.load(a.calib), float_ops, a.calib_views, nodes)
        with open(f"{a.out}/model_full_integer_quant.tflite", "wb") as f:
            f.write(model)
    print(json.dumps({"onnx2tf": onnx2tf.__version__, "tensorflow": tf.__version__}))
    return 0


def _first_last_convs(float_file: str) -> list[str]:
    """The output names of each U-Net's first and last convolutions in onnx2tf's float file: the CONV_2D ops
    that read the image (directly, or through a CONCATENATION with it: a W-Net's second U-Net) and those
    whose output a SOFTMAX reads (each U-Net's class logits)."""
    import tensorflow as tf

    it = tf.lite.Interpreter(model_path=float_file)
    ops = it._get_ops_details()  # noqa: SLF001 - the op list has no public accessor
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    image = it.get_input_details()[0]["index"]
    with_image = {image} | {
        o["outputs"][0] for o in ops if o["op_name"] == "CONCATENATION" and image in o["inputs"]
    }
    logits = {i for o in ops if o["op_name"] == "SOFTMAX" for i in o["inputs"]}
    return [
        names[o["outputs"][0]]
        for o in ops
        if o["op_name"] == "CONV_2D" and (o["inputs"][0] in with_image or o["outputs"][0] in logits)
    ]


def _int8_from_saved_model(folder: str, calib, float_ops: list[str], views: int, nodes: list[str]) -> bytes:
    """Full-integer INT8 of onnx2tf's saved model (``folder``) by TFLiteConverter, as onnx2tf makes it
    (per-channel int8 weights, int8 input and output), ``float_ops`` (op names) and ``nodes`` (output
    names) left in float, each calibration image seen in ``views`` orientations (itself, then flipped
    top-bottom, flipped left-right, turned a quarter)."""
    import numpy as np
    import tensorflow as tf

    def representative():
        for im in calib:
            for v in (im, im[::-1], im[:, ::-1], np.rot90(im, axes=(0, 1)))[:views]:
                if v.shape == im.shape:  # a quarter turn of a non-square input is another size: skipped
                    yield [np.ascontiguousarray(v[None], np.float32)]

    conv = tf.lite.TFLiteConverter.from_saved_model(folder)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    if not float_ops and not nodes:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return conv.convert()
    # Mixed int8 / float32: fully_quantize gives int8 input and output, as the plain full-integer file
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_ops=float_ops or None, denylisted_nodes=nodes or None, fully_quantize=True
    )
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=conv, debug_dataset=representative, debug_options=options
    )
    return debugger.get_nondebug_quantized_model()


if __name__ == "__main__":
    sys.exit(main())
