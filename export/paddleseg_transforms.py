"""Our preprocessing as a PaddleSeg transform, for PaddleSeg's deploy path (``DeployConfig``, deploy/python/
infer.py) reading a model written by ``fundus-edge export --paddleseg``. Importing this module registers
``FundusEdgePreprocess`` in PaddleSeg's transform registry; PaddleSeg cannot express the CLAHE channel or
padding to the network's multiple with its own transforms (Normalize does only per-channel affine maps)."""

from __future__ import annotations

import numpy as np
from fundus_edge.runtime.preprocess import PreprocessConfig, pad_to_multiple, preprocess
from paddleseg.cvlibs import manager


class FundusEdgePreprocess:
    """PaddleSeg hands HxWx3 float32 RGB in 0..255 (``Compose`` read it with OpenCV and turned it to RGB);
    this gives the network input as HxWxC (``Compose`` transposes to CxHxW after the last transform),
    padded at the bottom and right to ``pad_multiple`` with a ('padding', (h, w)) entry in ``trans_info``,
    which PaddleSeg's ``reverse_transform`` crops off the prediction."""

    def __init__(self, pad_multiple: int = 8, **preprocess_fields):
        self.cfg = PreprocessConfig.from_dict(preprocess_fields)
        self.pad_multiple = int(pad_multiple)

    def __call__(self, data: dict) -> dict:
        rgb = np.clip(np.asarray(data["img"], np.float32) + 0.5, 0, 255).astype(np.uint8)
        x = preprocess(rgb, self.cfg)
        data.setdefault("trans_info", []).append(("padding", tuple(x.shape[1:])))
        x, _ = pad_to_multiple(x, self.pad_multiple)
        data["img"] = np.ascontiguousarray(x.transpose(1, 2, 0))
        return data


if "FundusEdgePreprocess" not in manager.TRANSFORMS.components_dict:
    manager.TRANSFORMS.add_component(FundusEdgePreprocess)
