"""Helpers for tf2onnx-converted graphs, shared by the families' ONNX exports."""
from __future__ import annotations

from typing import Dict, Sequence


def name_outputs(proto, names: Sequence[str]) -> None:
    """Gives the graph outputs their public names (tf2onnx keeps TF's ``Identity:0`` names) through one
    ``Identity`` node each: renaming the tensors themselves would miss their uses inside Loop bodies."""
    import onnx

    for output, name in zip(proto.graph.output, names):
        proto.graph.node.append(onnx.helper.make_node("Identity", [output.name], [name], name=f"output_{name}"))
        output.name = name


def save_checked(proto, path: str, metadata: Dict[str, str]) -> str:
    """Adds ``metadata`` as the model's metadata properties, runs ``onnx.checker``, writes ``path``; returns it."""
    import onnx

    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, path)
    return path
