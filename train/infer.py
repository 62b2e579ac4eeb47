"""Full-image inference with a dygraph network (validation and checkpoint evaluation)."""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn.functional as F
from fundus_edge.runtime.preprocess import PreprocessConfig, pad_to_multiple, preprocess


def predict_prob(net, rgb: np.ndarray, pre: PreprocessConfig, pad_multiple: int) -> np.ndarray:
    """HxWx3 uint8 RGB -> HxW float32 vessel probability (net in eval mode)."""
    x, (h, w) = pad_to_multiple(preprocess(rgb, pre), pad_multiple)
    with paddle.no_grad():
        logits = net(paddle.to_tensor(x[None]))
        prob = F.softmax(logits, axis=1)[0, 1].numpy()
    return prob[:h, :w]
