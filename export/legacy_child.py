"""Child process of ``save_legacy``: runs with FLAGS_enable_pir_api=0 (see builders.py).

argv: a folder with config.yaml + weights.npz, and the output prefix."""

import sys
from pathlib import Path

import numpy as np
import paddle
from fundus_edge.export.builders import input_spec, strip_callstacks
from fundus_edge.train.checkpoint import load_state_reshaping
from fundus_edge.train.config import load_config
from fundus_edge.train.model import VesselProbability, network_from_config


def main(src: str, prefix: str) -> None:
    cfg = load_config(Path(src) / "config.yaml")
    net = network_from_config(cfg.model, cfg.preprocess.in_channels)
    with np.load(Path(src) / "weights.npz", allow_pickle=False) as w:
        load_state_reshaping(net, {k: w[k] for k in w.files})
    wrapped = VesselProbability(net)
    wrapped.eval()
    paddle.jit.save(wrapped, prefix, input_spec=input_spec(cfg.preprocess.in_channels))
    strip_callstacks(Path(prefix + ".pdmodel"))  # no machine paths in a shipped file


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
