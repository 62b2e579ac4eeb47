"""onnx2tf, run by ``fundus_edge.export.litert`` with the converter venv's Python (``.venv-litert``),
never the project's: onnx2tf and TensorFlow pin numpy 1.26 and protobuf 4, which the project's pins exclude.
So this file imports nothing of fundus_edge, and is run as a script, not a module.

Input: an ONNX copy (onnx2tf overwrites its input with the simplified, fixed-shape model), the input shape
(1,C,H,W), and for INT8 a calibration file: N x H x W x C float32 inputs already preprocessed as the runtime
feeds them (so onnx2tf's own mean / std normalisation is 0 / 1). Output: onnx2tf's files in ``--out``, and
one JSON line on stdout with the converter's versions. A failure ends with an ``error: ...`` line.
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
    if a.calib:
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
    print(json.dumps({"onnx2tf": onnx2tf.__version__, "tensorflow": tf.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
