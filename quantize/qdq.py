"""Rewrites of the QDQ ONNX files paddle2onnx makes from PaddleSlim's INT8 programs.

paddle2onnx quantizes every activation as signed int8 with zero point 0 (range [-128 s, 127 s]). OpenVINO's
CPU plugin runs such a file far from its own Q/DQ semantics: on the small model, 39 % of the vessel pixels
of two training images differed from ONNX Runtime running the file's Q, DQ and float ops as written, while
ONNX Runtime's own INT8 kernels differed on 5 %. The same Q/DQ pairs written as uint8 with zero point 128
describe exactly the same grid (the exact semantics do not move by one pixel), and OpenVINO then differs on
5 %, as ONNX Runtime does (docs/findings/precision-and-int8.md: ``python -m fundus_edge.quantize.probe``).
No converter option writes them so, hence this rewrite.
"""

from __future__ import annotations

import numpy as np


def _constant_values(model) -> dict:
    from onnx import numpy_helper

    vals = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            vals[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return vals


def activation_pairs(model) -> list[tuple]:
    """(QuantizeLinear, [DequantizeLinear ...]) of activations: the Q's input is computed, not a constant."""
    consts = _constant_values(model)
    readers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    pairs = []
    for q in model.graph.node:
        if q.op_type != "QuantizeLinear" or q.input[0] in consts:
            continue
        dqs = readers.get(q.output[0], [])
        if dqs and all(d.op_type == "DequantizeLinear" for d in dqs):
            pairs.append((q, dqs))
    return pairs


def unsigned_activations(model) -> int:
    """Rewrite per-tensor int8 activation Q/DQ pairs with zero point 0 as uint8 with zero point 128, in
    place; returns how many pairs changed. The quantization grid is unchanged: q_u8 = q_s8 + 128."""
    from onnx import helper, numpy_helper

    consts = _constant_values(model)
    made: dict[str, str] = {}
    changed = 0
    for q, dqs in activation_pairs(model):
        nodes = [q, *dqs]
        zps = [n.input[2] if len(n.input) > 2 else "" for n in nodes]
        vals = [consts.get(z) for z in zps]
        if any(v is None or v.dtype != np.int8 or v.size != 1 or int(v.ravel()[0]) != 0 for v in vals):
            continue  # already unsigned, asymmetric, per-channel, or a zero point we cannot read
        for n, z in zip(nodes, zps, strict=False):
            if z not in made:
                made[z] = f"{z}__u8_128"
                model.graph.node.insert(
                    0,
                    helper.make_node(
                        "Constant",
                        [],
                        [made[z]],
                        value=numpy_helper.from_array(np.array(128, np.uint8).reshape(consts[z].shape)),
                    ),
                )
            n.input[2] = made[z]
        changed += 1
    return changed
