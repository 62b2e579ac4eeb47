"""Child process of ``profile.profile_paddle``: Paddle Inference through our own engine, run with
ONEDNN_VERBOSE=1 so oneDNN logs every primitive to stdout; the timed runs' lines follow a ``==timed==`` mark
(the warm-up's come before it).

argv: the model folder, threads, timed runs, the .npy input."""

import ctypes
import os
import sys
from pathlib import Path

import numpy as np
from fundus_edge.runtime.engines import EngineOptions
from fundus_edge.runtime.engines.paddle import PaddleEngine
from fundus_edge.runtime.formats import formats_for
from fundus_edge.runtime.manifest import read_manifest


def main(model: str, threads: int, runs: int, x_file: str) -> None:
    m = Path(model)
    man = read_manifest(m)
    fmt = formats_for("paddle", list(man.formats))[0]
    e = PaddleEngine(
        m, fmt, list(man.formats[fmt]), EngineOptions("cpu", threads, None), man.quantization is not None
    )
    e.load()
    x = np.load(x_file)
    for _ in range(3):
        e.run(x)
    libc = ctypes.CDLL(None)
    libc.fflush(None)  # oneDNN writes through C stdio: the warm-up's lines go out before the mark
    os.write(1, b"==timed==\n")
    for _ in range(runs):
        e.run(x)
    libc.fflush(None)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
