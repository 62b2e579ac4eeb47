"""Child process of ``paddleseg.import_paddleseg``'s ONNX conversion: paddle2onnx aborts the whole process
(SIGABRT) on an operator it cannot convert (e.g. ENet's unpool), so an imported program is converted here.

argv: the program, its params, the ONNX file to write, the opset."""

import sys
from pathlib import Path

from fundus_edge.export.builders import program_to_onnx

if __name__ == "__main__":
    program_to_onnx(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
