"""The seed tutorial's model as a PaddleSeg user brings it: a PaddleSeg export made the way PaddleSeg's own
export does (run as a child process, since a legacy program needs FLAGS_enable_pir_api=0 from the start):
``paddleseg.models.UNet`` (the seed tutorial's model) wrapped by ``paddleseg.deploy.export.WrappedModel``,
``paddle.jit.save`` with a dynamic input, and the ``deploy.yaml`` PaddleSeg's tools/export.py writes (model,
params, transforms, input_shape, output_op, output_dtype).

argv: output folder, output_op (argmax | softmax | none), [weights .npz to load]. Untrained weights get a
fixed seed and a sharpened last layer, so their masks are confident (not a coin flip at 0.5): what the bench's
`seed-unet` row and tests/test_paddleseg.py import."""

import os
import sys

import numpy as np
import paddle
import yaml


def main(out: str, output_op: str, weights: str | None = None) -> None:
    import paddleseg.models as models
    from paddleseg.deploy.export import WrappedModel

    paddle.seed(0)
    net = models.UNet(num_classes=2)
    if weights:
        with np.load(weights, allow_pickle=False) as w:
            net.set_state_dict({k: paddle.to_tensor(w[k]) for k in w.files})
    else:
        with paddle.no_grad():
            net.cls.weight.set_value(net.cls.weight * 30.0)
    net.eval()
    model = WrappedModel(net, output_op) if output_op != "none" else net
    model = paddle.jit.to_static(
        model, input_spec=[paddle.static.InputSpec([None, 3, None, None], "float32", "x")], full_graph=True
    )
    paddle.jit.save(model, os.path.join(out, "model"))
    program = "model.json" if os.path.exists(os.path.join(out, "model.json")) else "model.pdmodel"
    deploy = {
        "Deploy": {
            "model": program,
            "params": "model.pdiparams",
            "transforms": [{"type": "Normalize", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}],
            "input_shape": [-1, 3, -1, -1],
            "output_op": output_op,
            "output_dtype": "int32" if output_op == "argmax" else "float32",
        }
    }
    with open(os.path.join(out, "deploy.yaml"), "w") as fh:
        yaml.safe_dump(deploy, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
