"""Build the PyTorch module for a registry entry. The only module that imports torch at load time.

Recurrent layers run the way a real-time host runs them: one frame per call,
hidden state kept between calls. ``forward`` accepts one frame
``[batch, features]`` (advances the state by one step) or a sequence
``[batch, time, features]``; ``reset()`` puts the state back to zeros, or, when the
entry says ``reset = "rest"``, to the resting state (:mod:`modelreg.rest`).
Underneath, :meth:`RealtimeModel.step` is a pure function of
``(input, state) -> (output, new state)`` that exporters can trace.

Each layer's torch module, per-frame step and state come from its kind
(:mod:`modelreg.layers`); this module holds no per-kind code.
"""

from __future__ import annotations

import contextlib
import math
import threading
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import torch
from torch import Tensor, nn

from .errors import UsageError
from .layers.base import LayerKind, LayerSpec, leaves, state_name

if TYPE_CHECKING:
    from .rest import ResetMode, RestingState

__all__ = ["BuildSpec", "RealtimeModel", "State", "build_module", "seeded", "seed_for"]


class BuildSpec(Protocol):
    """What building a module reads of an entry (a :class:`~modelreg.ModelSpec` is one).

    Named here, not imported from :mod:`modelreg.spec`: the spec builds modules
    (``spec.build()``), so the builder must not depend on it in turn.
    """

    @property
    def name(self) -> str: ...

    @property
    def in_features(self) -> int: ...

    @property
    def out_features(self) -> int: ...

    @property
    def input_range(self) -> tuple[float, float] | None: ...

    @property
    def layers(self) -> tuple[LayerSpec, ...]: ...

    # Also read when present (a ModelSpec has them): ``reset`` ("zeros" or "rest", default
    # "zeros") and ``rest_frame`` (the rest input, one value per feature; default zeros).

# Per layer: its state tensors in the order its kind's state() lists them, each
# [1, batch, size]: (h, c) for an LSTM, (h,) for a GRU, () for a dense layer.
LayerState = tuple[Tensor, ...]
State = list[LayerState]


class RealtimeModel(nn.Module):
    """A stack of layers (dense / LSTM / GRU, any kind of :mod:`modelreg.layers`) built from a :class:`ModelSpec`.

    What ``spec.build()`` and ``spec.load()`` return, and what exporters are
    handed. Attributes: ``in_features``, ``out_features``, ``is_stateful``,
    ``input_range`` (the entry's ``(min, max)``, or None), ``checkpoint_sha256``
    (of the checkpoint bytes ``spec.load()`` loaded; None for ``spec.build()``),
    ``reset_mode`` (the entry's ``reset``: ``"zeros"`` or ``"rest"``) and
    ``rest_input`` (the entry's rest input, one value per feature);
    methods: ``reset()``, ``resting_state()``, ``state_layout()``, ``streaming()``
    (the explicit-state form exporters trace) and torch's own ``state_dict()``.

    State-dict keys, with ``i`` the layer's index in the entry's ``layers`` and
    ``in`` its input size (the previous layer's units, or ``in_features``):
    dense ``layers.{i}.weight [units, in]``, ``layers.{i}.bias [units]``
    (``nn.Linear``); LSTM and GRU ``layers.{i}.weight_ih_l0 [G*units, in]``,
    ``layers.{i}.weight_hh_l0 [G*units, units]``, ``layers.{i}.bias_ih_l0`` and
    ``layers.{i}.bias_hh_l0 [G*units]`` (``nn.LSTM``/``nn.GRU``, ``batch_first``;
    G = 4, gates i, f, g, o for LSTM; G = 3, gates r, z, n for GRU). float32.
    """

    def __init__(self, spec: BuildSpec) -> None:
        super().__init__()
        self.spec_name = spec.name
        self.in_features = spec.in_features
        self.out_features = spec.out_features
        # The entry's input_range: what parity feeds this module's exports (see modelreg.inputs).
        self.input_range: tuple[float, float] | None = spec.input_range
        # sha256 of the checkpoint bytes the weights were loaded from (set by spec.load(); None when built).
        self.checkpoint_sha256: str | None = None
        self.layer_specs: tuple[LayerSpec, ...] = tuple(spec.layers)
        self.layer_kinds: tuple[LayerKind, ...] = tuple(layer.kind for layer in spec.layers)
        self.kinds: list[str] = [layer.type for layer in spec.layers]
        self.activation_names: list[str] = [layer.activation for layer in spec.layers]
        self.layers = nn.ModuleList()
        size = spec.in_features
        for layer in spec.layers:
            self.layers.append(layer.kind.build(layer, size))  # creation order fixes seeded weights
            size = layer.units
        self._state: State | None = None
        # Fixed by the layers; asked on every call, so computed once.
        self._stateful = any(layer.kind.state(layer) for layer in self.layer_specs)
        self._frame_period = math.lcm(1, *(leaf.layer.kind.frame_period(leaf.layer)
                                           for leaf in leaves(self.layer_specs, spec.in_features)))
        # What reset() restores (the entry's reset key), and the input of a silent host.
        self.reset_mode: ResetMode = getattr(spec, "reset", "zeros")
        rest = getattr(spec, "rest_frame", None)
        self.rest_input: tuple[float, ...] = (tuple(float(v) for v in rest) if rest is not None
                                              else (0.0,) * spec.in_features)
        # What the next call starts from after reset(): the entry's mode unless reset(to=...) said otherwise.
        self._reset_to: ResetMode = self.reset_mode
        # (what the weights were when it was computed, the resting state): see resting_state().
        self._rest_cache: tuple[tuple[Any, ...], RestingState] | None = None

    @property
    def is_stateful(self) -> bool:
        """True when a layer is recurrent: each call advances the state kept between calls."""
        return self._stateful

    @property
    def frame_period(self) -> int:
        """Frames after which every layer's frame counter is back where it was: the lcm of the strided
        conv1d layers' strides (1 without them). A resting state is compared every that many frames."""
        return self._frame_period

    def memory(self) -> int | None:
        """Past input frames the model's state depends on when every layer's memory is finite (conv
        buffers: the layers are chained, so their memories add up), None when one is unbounded (a
        recurrent layer anywhere, residual blocks included); 0 without state. A finite-memory model
        is at rest exactly after this many frames of a constant input (see :mod:`modelreg.rest`)."""
        total = 0
        for layer in self.layer_specs:
            memory = layer.kind.memory(layer)
            if memory is None:
                return None
            total += memory
        return total

    def reset(self, to: ResetMode | None = None) -> None:
        """Forget the recurrent state. The next call starts from zeros, or, when the entry says
        ``reset = "rest"``, from the resting state (see :meth:`resting_state`).

        ``to`` (``"zeros"`` or ``"rest"``) overrides the entry's choice until the next reset:
        parity references start from zeros, as every artifact's step does. Cheap: the
        resting state is computed once per set of weights. A model whose state never
        settles has no resting state and starts from zeros (the ``state.rest`` check fails).
        """
        if to is not None and to not in ("zeros", "rest"):
            raise UsageError.at("unknown reset mode", model=self.spec_name, key="to",
                                expected="'zeros' or 'rest'", found=repr(to))
        self._state = None
        self._reset_to = to or self.reset_mode

    def initial_state(self, batch: int) -> State:
        """Zero state for ``batch`` parallel streams."""
        dtype = next(self.parameters()).dtype  # float64 copies are used as exact references
        return [tuple(torch.zeros(1, batch, size, dtype=dtype) for _, size in layer.kind.state(layer))
                for layer in self.layer_specs]

    def resting_state(self) -> RestingState:
        """Where the state settles on :attr:`rest_input`, from a float64 copy (see :mod:`modelreg.rest`).

        Computed on first use and kept while the weights, buffers and activations stay as
        they were (a loaded checkpoint computes it at load time when the entry asks for
        ``reset = "rest"``, so that no call of a host's stream pays for it).
        """
        key = self._rest_key()
        with _rest_lock:  # validate's threads ask for it at once: the first computes, the others wait
            if self._rest_cache is None or self._rest_cache[0] != key:
                from .rest import compute_resting_state

                self._rest_cache = (key, compute_resting_state(self))
            return self._rest_cache[1]

    def _rest_key(self) -> tuple[Any, ...]:
        """What the resting state depends on: each tensor's identity, version (bumped by every
        in-place change, load_state_dict included) and dtype; activations; the rest input."""
        tensors = tuple((id(t), t._version, t.dtype) for t in (*self.parameters(), *self.buffers()))
        return tensors, tuple(self.activation_names), self.rest_input

    def _start_state(self, batch: int) -> State:
        """The state the first call after a reset starts from (see :meth:`reset`)."""
        if self._reset_to == "rest":
            resting = self.resting_state()
            if resting.behaviour == "converged":
                dtype = next(self.parameters()).dtype
                flat = iter(resting.tensors(batch, dtype))
                return [tuple(next(flat) for _ in layer.kind.state(layer)) for layer in self.layer_specs]
        return self.initial_state(batch)

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """Run a sequence ``[batch, time, features]`` from ``state``; pure (no side effects)."""
        outputs, new_state = self.step_layers(x, state)
        return outputs[-1], new_state

    def step_layers(self, x: Tensor, state: State) -> tuple[list[Tensor], State]:
        """:meth:`step`, keeping every layer's output (``[batch, time, units]`` each, the last being
        the model's); pure. For checks that look inside the stack (subnormal values, say)."""
        outputs: list[Tensor] = []
        new_state: State = []
        for kind, layer, activation, module, layer_state in zip(self.layer_kinds, self.layer_specs,
                                                                 self.activation_names, self.layers, state):
            if activation != layer.activation:  # activation_names belongs to the module and may be edited
                layer = attrs.evolve(layer, activation=activation)
            x, out_state = kind.forward(module, layer, x, layer_state)
            outputs.append(x)
            new_state.append(out_state)
        return outputs, new_state

    def state_layout(self) -> list[tuple[str, int]]:
        """(name, size) of every state tensor in the order :meth:`streaming` takes them:
        each kind's state names with the layer index appended (``h{i}``, ``c{i}`` for an
        LSTM at layer i, ``h{i}`` for a GRU); inside a residual block, after the name's
        first part (``buf3.layers.0``: the conv1d at ``layers[3].layers[0]``)."""
        return [(state_name(name, index), size) for index, layer in enumerate(self.layer_specs)
                for name, size in layer.kind.state(layer)]

    def streaming(self) -> nn.Module:
        """A module for exporters: ``(x [batch, in], *state) -> (y [batch, out], *new_state)``.

        State tensors are ``[1, batch, units]`` in :meth:`state_layout` order; a
        host passes zeros first, then each call's new state. Shares weights with self.
        """
        return _Streaming(self).eval()

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() not in (2, 3) or x.shape[-1] != self.in_features:
            raise UsageError.at(
                "input has the wrong shape",
                model=self.spec_name,
                expected=f"[batch, {self.in_features}] or [batch, time, {self.in_features}]",
                found=list(x.shape),
            )
        frame = x.dim() == 2
        sequence = x.unsqueeze(1) if frame else x
        batch = sequence.shape[0]
        if not self.is_stateful:
            y, _ = self.step(sequence, [()] * len(self.layers))
            return y.squeeze(1) if frame else y
        if self._state is None:
            self._state = self._start_state(batch)
        else:
            current = _batch_of(self._state)
            if current != batch:
                raise UsageError.at(
                    "batch size changed while the model holds recurrent state; call reset() first",
                    model=self.spec_name, expected=f"batch {current}", found=batch,
                )
        y, new_state = self.step(sequence, self._state)
        # Detach so that a long stream never builds an ever-growing autograd graph.
        self._state = [tuple(t.detach() for t in s) for s in new_state]
        return y.squeeze(1) if frame else y


class _Streaming(nn.Module):
    """One frame in, one frame out, recurrent state passed explicitly (traceable)."""

    def __init__(self, inner: RealtimeModel) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor, *flat_state: Tensor) -> tuple[Tensor, ...]:
        state: State = []
        position = 0
        for layer in self.inner.layer_specs:
            count = len(layer.kind.state(layer))
            state.append(tuple(flat_state[position:position + count]))
            position += count
        y, new_state = self.inner.step(x.unsqueeze(1), state)
        flat_out = [tensor for layer_state in new_state for tensor in layer_state]
        # Select the one time step rather than squeeze(1): when a layer reshapes with
        # traced sizes (conv2d), torch.onnx cannot prove the axis is 1 and exports
        # squeeze as an If whose branch keeps the traced batch size, so onnxruntime
        # fails on any other batch.
        return (y[:, 0], *flat_out)


# One resting-state computation at a time (a module-level lock: modules are deep-copied, a lock cannot be).
_rest_lock = threading.RLock()


def _batch_of(state: State) -> int:
    for layer_state in state:
        if layer_state:
            return int(layer_state[0].shape[1])
    return 0


def seed_for(name: str, seed: int) -> int:
    """The seed one model's weights are drawn with: stable across runs and platforms."""
    # crc32, not hash(): Python's str hash is randomised per process.
    return (seed * 1_000_003 + zlib.crc32(name.encode("utf-8"))) % (2**63)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's global RNG seeded, restoring the RNG afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_module(spec: BuildSpec, seed: int | None = None) -> RealtimeModel:
    """The module for ``spec`` in eval mode; with ``seed`` its weights are reproducible."""
    if seed is None:
        module = RealtimeModel(spec)
    else:
        with seeded(seed_for(spec.name, seed)):
            module = RealtimeModel(spec)
    return module.eval()
