"""Small models whose state does something known on silence, for the resting-state and denormal tests.

Each is a registry entry plus weights written into its checkpoint: a GRU whose update gate
holds a chosen value on silence (its state decays by that factor), a GRU that oscillates, an
LSTM whose cell grows without bound, a GRU that settles too slowly, an LSTM whose state turns
NaN. PyTorch's gate order: GRU r, z, n; LSTM i, f, g, o.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import torch

import modelreg
from modelreg.checkpoint import save_checkpoint


def entry(name: str, layers: str, *, inputs: int = 2, outputs: int = 2, params: int, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        [models.{name}]
        description = "{name}"
        input_shape = [1, {inputs}]
        output_shape = [1, {outputs}]
        dtype = "float32"
        params = {params}
        latency_ms = 50.0
        exports = []
        checkpoint = "models/{name}.pt"
        """) + extra + f"layers = [\n{layers}]\n\n"


GRU_LAYERS = '    { type = "gru", units = 4 },\n    { type = "dense", units = 2, activation = "tanh" },\n'
GRU_PARAMS = 3 * (4 * 2 + 4 * 4 + 2 * 4) + 4 * 2 + 2  # 106
LSTM_LAYERS = '    { type = "lstm", units = 1 },\n'
LSTM_PARAMS = 4 * (1 * 2 + 1 * 1 + 2)  # 20


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def decaying_gru(state: dict[str, torch.Tensor], update: float) -> None:
    """On silence the GRU computes h' = update * h exactly (the candidate is tanh(0) = 0): its state decays
    by ``update`` per frame. The input drives the candidate, so the parity stream moves h first."""
    for key in state:
        if key.startswith("layers.0."):
            state[key].zero_()
    state["layers.0.bias_ih_l0"][4:8] = logit(update) if update != 0.5 else 0.0  # sigmoid(0) is exactly 0.5
    state["layers.0.weight_ih_l0"][8:12] = torch.tensor([[1.5, -0.5], [0.7, 1.1], [-1.2, 0.4], [0.3, 0.9]])
    state["layers.1.bias"].zero_()


def oscillating_gru(state: dict[str, torch.Tensor]) -> None:
    """h' = tanh(0.1 - 3 h) on silence (z ~ 0, r ~ 1): its fixed point repels, the state swings with period 2."""
    for key in state:
        if key.startswith("layers.0."):
            state[key].zero_()
    state["layers.0.bias_ih_l0"][0:4] = 30.0  # r = 1
    state["layers.0.bias_ih_l0"][4:8] = -30.0  # z = 0
    state["layers.0.weight_hh_l0"][8:12] = -3.0 * torch.eye(4)
    state["layers.0.bias_ih_l0"][8:12] = 0.1


def slow_gru(state: dict[str, torch.Tensor]) -> None:
    """h' = 0.9999 h + 0.0001 tanh(0.5) on silence: it settles, but over some 10^5 frames."""
    for key in state:
        if key.startswith("layers.0."):
            state[key].zero_()
    state["layers.0.bias_ih_l0"][4:8] = logit(0.9999)
    state["layers.0.bias_ih_l0"][8:12] = 0.5


def growing_lstm(state: dict[str, torch.Tensor]) -> None:
    """Forget and input gates saturated at 1 and g = tanh(0.5): the cell grows by 0.46 every frame."""
    for value in state.values():
        value.zero_()
    state["layers.0.bias_ih_l0"][:] = torch.tensor([40.0, 40.0, 0.5, 40.0])


def nan_lstm(state: dict[str, torch.Tensor]) -> None:
    """A NaN bias: the state is NaN from the first frame."""
    state["layers.0.bias_hh_l0"][2] = float("nan")


def write_weights(spec: modelreg.ModelSpec, shape) -> None:  # type: ignore[no-untyped-def]
    """Build ``spec``'s module (seeded), let ``shape(state_dict)`` set its weights, save its checkpoint."""
    from modelreg.builder import build_module

    module = build_module(spec, seed=0)
    state = {key: value.detach().clone() for key, value in module.state_dict().items()}
    with torch.no_grad():
        shape(state)
    module.load_state_dict(state)
    spec.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(module, spec.checkpoint)


def make_registry(folder: Path, models: dict[str, tuple[str, object]]) -> Path:
    """A registry of ``models`` (name -> (entry text, weight shaper or None for seeded weights)) in ``folder``."""
    from modelreg.checkpoint import init_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "registry.toml"
    path.write_text("".join(text for text, _ in models.values()))
    registry = modelreg.load_registry(path)
    for name, (_, shape) in models.items():
        if shape is None:
            init_checkpoint(registry[name], seed=0)
        else:
            write_weights(registry[name], shape)
    return path
