"""Build the PyTorch module for a registry entry. The only module that imports torch at load time.

Recurrent layers run the way a real-time host runs them: one frame per call,
hidden state kept between calls. ``forward`` accepts one frame
``[batch, features]`` (advances the state by one step) or a sequence
``[batch, time, features]``; ``reset()`` puts the state back to zeros.
Underneath, :meth:`RealtimeModel.step` is a pure function of
``(input, state) -> (output, new state)`` that exporters can trace.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Union

import torch
from torch import Tensor, nn

from .errors import UsageError

if TYPE_CHECKING:
    from .spec import ModelSpec

__all__ = ["RealtimeModel", "State", "build_module", "seeded", "seed_for"]

# Per recurrent layer: (h, c) for an LSTM, h for a GRU, None for a dense layer.
LayerState = Union[tuple[Tensor, Tensor], Tensor, None]
State = list[LayerState]

_ACTIVATIONS = {
    "linear": lambda x: x,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "softmax": lambda x: torch.softmax(x, dim=-1),
    "elu": torch.nn.functional.elu,
}


class RealtimeModel(nn.Module):
    """A stack of dense / LSTM / GRU layers built from a :class:`ModelSpec`.

    What ``spec.build()`` and ``spec.load()`` return, and what exporters are
    handed. Attributes: ``in_features``, ``out_features``, ``is_stateful``;
    methods: ``reset()``, ``state_layout()``, ``streaming()`` (the explicit-state
    form exporters trace) and torch's own ``state_dict()``.

    State-dict keys, with ``i`` the layer's index in the entry's ``layers`` and
    ``in`` its input size (the previous layer's units, or ``in_features``):
    dense ``layers.{i}.weight [units, in]``, ``layers.{i}.bias [units]``
    (``nn.Linear``); LSTM and GRU ``layers.{i}.weight_ih_l0 [G*units, in]``,
    ``layers.{i}.weight_hh_l0 [G*units, units]``, ``layers.{i}.bias_ih_l0`` and
    ``layers.{i}.bias_hh_l0 [G*units]`` (``nn.LSTM``/``nn.GRU``, ``batch_first``;
    G = 4, gates i, f, g, o for LSTM; G = 3, gates r, z, n for GRU). float32.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec_name = spec.name
        self.in_features = spec.in_features
        self.out_features = spec.out_features
        self.kinds: list[str] = []
        self.activation_names: list[str] = []
        self.layers = nn.ModuleList()
        size = spec.in_features
        for layer in spec.layers:
            if layer.type == "dense":
                self.layers.append(nn.Linear(size, layer.units))
            elif layer.type == "lstm":
                self.layers.append(nn.LSTM(size, layer.units, batch_first=True))
            else:
                self.layers.append(nn.GRU(size, layer.units, batch_first=True))
            self.kinds.append(layer.type)
            self.activation_names.append(layer.activation)
            size = layer.units
        self._state: State | None = None

    @property
    def is_stateful(self) -> bool:
        """True when a layer is recurrent: each call advances the state kept between calls."""
        return any(kind != "dense" for kind in self.kinds)

    def reset(self) -> None:
        """Forget the recurrent state; the next call starts from zeros."""
        self._state = None

    def initial_state(self, batch: int) -> State:
        """Zero state for ``batch`` parallel streams."""
        state: State = []
        dtype = next(self.parameters()).dtype  # float64 copies are used as exact references
        for kind, layer in zip(self.kinds, self.layers):
            if kind == "dense":
                state.append(None)
                continue
            zeros = torch.zeros(1, batch, _hidden_size(layer), dtype=dtype)
            state.append((zeros, zeros.clone()) if kind == "lstm" else zeros)
        return state

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """Run a sequence ``[batch, time, features]`` from ``state``; pure (no side effects)."""
        new_state: State = []
        for kind, act, layer, layer_state in zip(self.kinds, self.activation_names, self.layers, state):
            if kind == "dense":
                x = _ACTIVATIONS[act](layer(x))
                new_state.append(None)
            else:
                x, out_state = layer(x, layer_state)
                new_state.append(out_state)
        return x, new_state

    def state_layout(self) -> list[tuple[str, int]]:
        """(name, units) of every state tensor in the order :meth:`streaming` takes them:
        ``h{i}``, ``c{i}`` for an LSTM at layer i, ``h{i}`` for a GRU."""
        layout: list[tuple[str, int]] = []
        for index, (kind, layer) in enumerate(zip(self.kinds, self.layers)):
            if kind == "lstm":
                layout += [(f"h{index}", _hidden_size(layer)), (f"c{index}", _hidden_size(layer))]
            elif kind == "gru":
                layout.append((f"h{index}", _hidden_size(layer)))
        return layout

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
            y, _ = self.step(sequence, [None] * len(self.layers))
            return y.squeeze(1) if frame else y
        if self._state is None:
            self._state = self.initial_state(batch)
        else:
            current = _batch_of(self._state)
            if current != batch:
                raise UsageError.at(
                    "batch size changed while the model holds recurrent state; call reset() first",
                    model=self.spec_name, expected=f"batch {current}", found=batch,
                )
        y, new_state = self.step(sequence, self._state)
        # Detach so that a long stream never builds an ever-growing autograd graph.
        self._state = [_detach(s) for s in new_state]
        return y.squeeze(1) if frame else y


class _Streaming(nn.Module):
    """One frame in, one frame out, recurrent state passed explicitly (traceable)."""

    def __init__(self, inner: RealtimeModel) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor, *flat_state: Tensor) -> tuple[Tensor, ...]:
        state: State = []
        position = 0
        for kind in self.inner.kinds:
            if kind == "lstm":
                state.append((flat_state[position], flat_state[position + 1]))
                position += 2
            elif kind == "gru":
                state.append(flat_state[position])
                position += 1
            else:
                state.append(None)
        y, new_state = self.inner.step(x.unsqueeze(1), state)
        flat_out: list[Tensor] = []
        for layer_state in new_state:
            if isinstance(layer_state, tuple):
                flat_out += list(layer_state)
            elif layer_state is not None:
                flat_out.append(layer_state)
        return (y.squeeze(1), *flat_out)


def _batch_of(state: State) -> int:
    for layer_state in state:
        if isinstance(layer_state, tuple):
            return int(layer_state[0].shape[1])
        if layer_state is not None:
            return int(layer_state.shape[1])
    return 0


def _detach(layer_state: LayerState) -> LayerState:
    if isinstance(layer_state, tuple):
        return (layer_state[0].detach(), layer_state[1].detach())
    return None if layer_state is None else layer_state.detach()


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


def build_module(spec: ModelSpec, seed: int | None = None) -> RealtimeModel:
    """The module for ``spec`` in eval mode; with ``seed`` its weights are reproducible."""
    if seed is None:
        module = RealtimeModel(spec)
    else:
        with seeded(seed_for(spec.name, seed)):
            module = RealtimeModel(spec)
    return module.eval()


def _hidden_size(layer: torch.nn.Module) -> int:
    """Units of a recurrent layer (``ModuleList`` items are typed as plain modules)."""
    assert isinstance(layer, torch.nn.RNNBase)
    return layer.hidden_size
