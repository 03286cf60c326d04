"""Layer kinds: one module per kind, and the one list of them.

Each kind (``dense``, ``lstm``, ``gru``, ``activation``, ...) is a module here holding everything
about it (see :class:`~modelreg.layers.base.LayerKind`); the registry, the
builder, the RTNeural writer, reader and runtime, and the ONNX state all ask
the kinds in :data:`KINDS` and hold no per-kind code.

Adding a kind: write ``modelreg/layers/<kind>.py`` (a ``LayerKind`` subclass
and its ``KIND`` instance), add it to :data:`KINDS` below, run
``make schemas`` (regenerates the layer parts of ``schemas/*.schema.json``),
and add its tests. Nothing else changes. :func:`register_kind` adds a kind at
run time without editing this list (tests and experiments; it does not reach
``--jobs`` worker processes).

torch- and numpy-free at import: ``import modelreg`` imports this package.
"""

from __future__ import annotations

from . import activations, batchnorm, batchnorm2d, conv1d, conv2d, dense, gru, lstm, prelu, residual, wavenet
from .base import (LayerKind, LayerSpec, RTNeuralLayerType, generation, get_kind, install_builtin, kinds, names,
                   register_kind, rtneural_handler, rtneural_handlers, unregister_kind)

__all__ = [
    "KINDS",
    "LayerKind",
    "LayerSpec",
    "RTNeuralLayerType",
    "generation",
    "get_kind",
    "kinds",
    "names",
    "register_kind",
    "rtneural_handler",
    "rtneural_handlers",
    "unregister_kind",
]

#: THE list of layer kinds, in the order the schemas and messages list them.
#: Registry kinds are LayerKind; an RTNeural layer type that is not (yet) a
#: registry kind would be an RTNeuralLayerType (none today).
KINDS: tuple[RTNeuralLayerType, ...] = (
    dense.KIND,
    lstm.KIND,
    gru.KIND,
    conv1d.KIND,
    activations.KIND,
    batchnorm.KIND,
    prelu.KIND,
    conv2d.KIND,
    batchnorm2d.KIND,
    residual.KIND,  # a block of the kinds above (and of blocks); no RTNeural type
    wavenet.KIND,  # NAM's WaveNet; no RTNeural type (nam and onnx write it)
)

install_builtin(KINDS)
