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

from . import activations, batchnorm, batchnorm2d, conv1d, conv2d, dense, gru, lstm, prelu
from .base import LayerKind, RTNeuralLayerType

__all__ = [
    "KINDS",
    "LayerKind",
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
)

_registered: list[RTNeuralLayerType] = []
_generation = 0


def _all() -> tuple[RTNeuralLayerType, ...]:
    return KINDS + tuple(_registered)


def kinds() -> tuple[LayerKind, ...]:
    """Every registry layer kind (built-in, then registered), in order."""
    return tuple(kind for kind in _all() if isinstance(kind, LayerKind))


def names() -> tuple[str, ...]:
    """The registry ``type`` values, in order."""
    return tuple(kind.name for kind in kinds())


_by_name: dict[str, LayerKind] = {}
_by_name_generation = -1


def get_kind(name: str) -> LayerKind:
    """The kind whose registry ``type`` is ``name`` (KeyError if none)."""
    global _by_name, _by_name_generation
    # A dictionary rebuilt when the kinds change: this runs for every layer of
    # every frame a built module steps, where a scan of the list cost ~5 us.
    if _by_name_generation != _generation:
        _by_name = {kind.name: kind for kind in kinds()}
        _by_name_generation = _generation
    return _by_name[name]


def rtneural_handlers() -> tuple[RTNeuralLayerType, ...]:
    """Everything that reads an RTNeural layer type, in order."""
    return _all()


def rtneural_handler(rtneural_type: str) -> RTNeuralLayerType | None:
    """What reads RTNeural layers of ``type == rtneural_type`` (None: not supported)."""
    for handler in _all():
        if rtneural_type in handler.rtneural_types:
            return handler
    return None


def generation() -> int:
    """Changes whenever the kinds change: caches of composed schemas key on it."""
    return _generation


def register_kind(kind: RTNeuralLayerType) -> None:
    """Add a kind at run time (after the built-in ones), without editing :data:`KINDS`.

    For tests and experiments: registered kinds live in this process only.
    A name or RTNeural type already taken is refused with ValueError.
    """
    global _generation
    taken = set(names())
    if isinstance(kind, LayerKind) and kind.name in taken:
        raise ValueError(f"a layer kind named {kind.name!r} exists already")
    clash = [t for t in kind.rtneural_types if rtneural_handler(t) is not None]
    if clash:
        raise ValueError(f"RTNeural layer type {clash[0]!r} is read by another kind already")
    _registered.append(kind)
    _generation += 1


def unregister_kind(kind: RTNeuralLayerType) -> None:
    """Remove a kind added with :func:`register_kind` (no-op if it is not registered)."""
    global _generation
    if kind in _registered:
        _registered.remove(kind)
        _generation += 1
