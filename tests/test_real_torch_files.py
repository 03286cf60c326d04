"""Proof against real files (issue 19, section 3): torch models written the way RTNeural's
``python/*_torch.py`` scripts and the micro-TCN scripts write them (plain ``nn.Module`` classes with
the user's own attribute names), each saving its state dict as those scripts do
(``json.dump({k: v.tolist() for k, v in model.state_dict().items()})``). Registry entries declare
the architectures and name those JSON files as their checkpoints (``checkpoint_names``: a table, or
``"match"``); each entry reproduces the script's own module output over a stream, and its
``rtneural-torch`` and ``rtneural-cpp`` (JSON and embedded weights) exports match torch in RTNeural's
C++.

Cases: (a) a GRU, then a 3-layer ``nn.GRU``, then a dense head; (b) the same with LSTMs; (c) a
conv1d stack with a dilated, a grouped (groups=2) and a strided (stride=2) conv, then dense; (d) a TCN
block: bias-free dilated conv, BatchNorm1d, PReLU, plus a grouped bias-free 1x1 conv residual, then
dense.

C++: one export and one validate run over one registry holding every entry: 9 programs (one per
header: rtneural-torch for each model, rtneural-cpp in its JSON form for each, embedded weights for
the strided stack), compiled once per session (~9 s each; the validate run reuses them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from modelreg import load_registry
from modelreg.checkpoint import load_checkpoint

from conftest import needs_rtneural

torch.set_grad_enabled(False)

FRAMES = 64  # the stream each script's module and each entry are run over


# ------------------------------------------------------------ the user's scripts (RTNeural's style)


class GRUNet(nn.Module):
    """RTNeural's python/gru_torch.py style: a GRU, a stacked GRU, a dense head; batch_first."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(input_size=2, hidden_size=8, batch_first=True)
        self.gru2 = nn.GRU(input_size=8, hidden_size=8, num_layers=3, batch_first=True)
        self.dense = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.gru(x)
        x, _ = self.gru2(x)
        return self.dense(x)


class LSTMNet(nn.Module):
    """The same with LSTMs (python/lstm_torch.py style)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size=2, hidden_size=8, batch_first=True)
        self.lstm2 = nn.LSTM(input_size=8, hidden_size=8, num_layers=3, batch_first=True)
        self.dense = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.lstm(x)
        x, _ = self.lstm2(x)
        return self.dense(x)


class ConvNet(nn.Module):
    """python/conv1d_torch.py style, offline: causal (left-padded) convs over [batch, time, channels],
    a dilated one, a grouped one and a strided one, then a dense head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(2, 4, kernel_size=3, dilation=2)
        self.conv2 = nn.Conv1d(4, 4, kernel_size=3, groups=2)
        self.conv3 = nn.Conv1d(4, 6, kernel_size=2, stride=2)
        self.dense = nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        x = torch.tanh(self.conv1(F.pad(x, (4, 0))))
        x = torch.tanh(self.conv2(F.pad(x, (2, 0))))
        x = torch.tanh(self.conv3(F.pad(x, (1, 0))))  # one output per 2 input frames
        return self.dense(x.transpose(1, 2))


class TCNBlock(nn.Module):
    """A micro-TCN block (csteinmetz1/micro-tcn's TCNBlock, causal): a bias-free dilated conv,
    BatchNorm1d and PReLU on the main path, a grouped bias-free 1x1 conv on the block's input."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.pad = (kernel_size - 1) * dilation
        self.conv1 = nn.Conv1d(in_ch, out_ch, kernel_size, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm1d(out_ch)
        self.relu = nn.PReLU(out_ch)
        self.res = nn.Conv1d(in_ch, out_ch, kernel_size=1, groups=in_ch, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn(self.conv1(F.pad(x, (self.pad, 0)))))
        return y + self.res(x)


class TCNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = TCNBlock(2, 4, kernel_size=3, dilation=2)
        self.dense = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.block(x.transpose(1, 2)).transpose(1, 2))


def _trained(model: nn.Module, seed: int) -> nn.Module:
    """Seeded weights, widened out of the activations' linear region; batchnorm statistics and PReLU
    slopes that are not the defaults (a model as trained, not as built)."""
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.uniform_(0.5, 1.5)
            module.bias.uniform_(-0.3, 0.3)
        elif isinstance(module, nn.PReLU):
            module.weight.uniform_(0.05, 0.5)
        elif isinstance(module, (nn.Linear, nn.Conv1d, nn.GRU, nn.LSTM)):
            for parameter in module.parameters():
                parameter.uniform_(-0.6, 0.6)
    return model.eval()


def _save_json(model: nn.Module, path: Path) -> None:
    # Exactly as RTNeural's python/*_torch.py scripts save their weights.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as json_file:
        json.dump({k: v.tolist() for k, v in model.state_dict().items()}, json_file)


# ------------------------------------------------------------ the registry entries

ENTRY = """
[models.{name}]
description = "{description}"
input_shape = [1, 2]
output_shape = [1, 1]
dtype = "float32"
params = {params}
latency_ms = 50.0
exports = {exports}
checkpoint = "models/{file}.json"
checkpoint_names = {names}
tolerance = 1e-5
layers = [
{layers}
]
"""

CASES: dict[str, dict[str, Any]] = {
    "gru": dict(
        script=GRUNet, seed=1, description="a GRU, a 3-layer GRU, a dense head",
        names='{ "gru" = 0, "gru2" = 1, "dense" = 2 }',
        layers="""    { type = "gru", units = 8 },
    { type = "gru", units = 8, num_layers = 3 },
    { type = "dense", units = 1, activation = "linear" },"""),
    "lstm": dict(
        script=LSTMNet, seed=2, description="an LSTM, a 3-layer LSTM, a dense head",
        names='"match"',
        layers="""    { type = "lstm", units = 8 },
    { type = "lstm", units = 8, num_layers = 3 },
    { type = "dense", units = 1, activation = "linear" },"""),
    "conv": dict(
        script=ConvNet, seed=3, description="dilated, grouped and strided convs, a dense head",
        # conv1 and conv2 hold the same shapes ([4, 2, 3]): only a table can tell them apart.
        names='{ "conv1" = 0, "conv2" = 1, "conv3" = 2, "dense" = 3 }',
        layers="""    { type = "conv1d", units = 4, kernel_size = 3, dilation = 2, activation = "tanh" },
    { type = "conv1d", units = 4, kernel_size = 3, groups = 2, activation = "tanh" },
    { type = "conv1d", units = 6, kernel_size = 2, stride = 2, activation = "tanh" },
    { type = "dense", units = 1, activation = "linear" },"""),
    "tcn": dict(
        script=TCNNet, seed=4, description="a micro-TCN block, a dense head",
        # The block's own module names, each read as a layer inside the entry's residual block.
        names=('{ "block.conv1" = "layers.0.layers.0", "block.bn" = "layers.0.layers.1", '
               '"block.relu" = "layers.0.layers.2", "block.res" = "layers.0.skip.0", "dense" = 1 }'),
        layers="""    { type = "residual", layers = [
        { type = "conv1d", units = 4, kernel_size = 3, dilation = 2, bias = false },
        { type = "batchnorm" },
        { type = "prelu" },
    ], skip = [ { type = "conv1d", units = 4, kernel_size = 1, groups = 2, bias = false } ] },
    { type = "dense", units = 1, activation = "linear" },"""),
}

#: The entries whose rtneural-cpp header embeds the weights too: the strided conv stack (a straight
#: stack's embedded setters with a StridedConv1DT; embedded recurrent stacks and blocks are proven in
#: tests/test_rtneural_cpp.py and tests/test_residual_cpp.py). One more program each: kept few.
EMBEDDED = ("conv",)


def _registry_text(params: dict[str, int]) -> str:
    text = ""
    for name, case in CASES.items():
        fields = dict(description=case["description"], params=params[name], file=name, names=case["names"],
                      layers=case["layers"])
        text += ENTRY.format(name=name, exports='["rtneural-torch", "rtneural-cpp"]', **fields)
        if name in EMBEDDED:
            text += ENTRY.format(name=f"{name}_embedded", exports='["rtneural-cpp"]', **fields).replace(
                'tolerance = 1e-5', 'tolerance = 1e-5\ncpp_weights = "embedded"')
    return text


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The scripts' models, their JSON files and the registry declaring them; a stream and each
    script's output over it."""
    folder = tmp_path_factory.mktemp("realfiles")
    scripts: dict[str, nn.Module] = {}
    params: dict[str, int] = {}
    for name, case in CASES.items():
        scripts[name] = _trained(case["script"](), case["seed"])
        params[name] = sum(p.numel() for p in scripts[name].parameters())
        _save_json(scripts[name], folder / "models" / f"{name}.json")
    (folder / "registry.toml").write_text(_registry_text(params), encoding="utf-8")
    torch.manual_seed(0)
    stream = torch.randn(1, FRAMES, 2) * 0.7
    return {"folder": folder, "scripts": scripts, "stream": stream}


def _script_output(name: str, project: dict[str, Any]) -> torch.Tensor:
    """What the user's script computes over the stream, as the streaming model must give it."""
    out = project["scripts"][name](project["stream"])
    if name == "conv":
        # RTNeural's StridedConv1D: one output every 2 frames, held in between
        # (modelreg/layers/conv1d.py; docs/decisions.md "Strided conv1d").
        out = out.repeat_interleave(2, dim=1)[:, :FRAMES]
    return out


# ------------------------------------------------------------ the entries reproduce the scripts


@pytest.mark.parametrize("name", list(CASES))
def test_the_entry_reproduces_the_scripts_output(project: dict[str, Any], name: str) -> None:
    spec = load_registry(project["folder"] / "registry.toml")[name]
    module = load_checkpoint(spec)
    expected = _script_output(name, project)
    # As a sequence, and frame by frame (RTNeural's way of running it).
    sequence = module(project["stream"])
    module.reset()
    frames = torch.stack([module(project["stream"][:, t]) for t in range(FRAMES)], dim=1)
    for got in (sequence, frames):
        error = float((got - expected).abs().max())
        assert error < 1e-5, (name, error)
    assert float(expected.abs().max()) > 0.1  # the stream reaches the weights: a real comparison


# ------------------------------------------------------------ in RTNeural's C++


@needs_rtneural
def test_every_export_matches_torch_in_cpp(project: dict[str, Any], cpp: Path) -> None:
    # One validate run over the registry: each entry loads the script's JSON file, exports
    # rtneural-torch (the state-dict JSON and a torch_helpers header) and rtneural-cpp, and proves
    # each in RTNeural's C++ against the entry's torch module (which reproduces the script, above).
    from modelreg.exporting import export_all
    from modelreg.validation import validate_all

    registry = project["folder"] / "registry.toml"
    exported = export_all(registry, jobs=2)  # the headers compile two at a time
    assert exported.ok, exported
    report = validate_all(registry, latency=False, write=False)
    assert not report.problems
    figures = {}
    for name, model in report.items():
        failed = [f"{c.name}: {c.status}: {c.message}" for c in model.checks if c.status in ("fail", "error")]
        assert not failed, (name, failed)
        for check in model.checks:
            if check.name.endswith(".parity") and check.name.startswith("rtneural-"):
                assert check.status == "pass", (name, check)
                # The deciding error (scaled to float32's rounding of each output); max_abs_error is
                # larger on the +-1e6 edge cases, whose outputs are ~1e6 (float32 spacing 0.06 there).
                figures[f"{name} {check.name}"] = check.figures["max_error"]
    expected = {f"{name} rtneural-torch.parity" for name in CASES} | {
        f"{name} rtneural-cpp.parity" for name in CASES} | {f"{name}_embedded rtneural-cpp.parity" for name in EMBEDDED}
    assert set(figures) == expected
    assert max(figures.values()) < 1e-5, figures


def test_a_block_layer_missing_from_the_file_is_named_as_the_file_names_it(project: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    # The micro-TCN file without its residual conv: the problem names the file's tensor (block.res.weight).
    from modelreg.errors import CheckpointError

    registry = tmp_path / "registry.toml"
    registry.write_text((project["folder"] / "registry.toml").read_text(), encoding="utf-8")
    data = json.loads((project["folder"] / "models" / "tcn.json").read_text())
    del data["block.res.weight"]
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tcn.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(load_registry(registry)["tcn"])
    [problem] = caught.value.problems
    assert problem.key == "block.res.weight" and "missing tensor" in problem.reason


def test_the_strided_stacks_embedded_header_is_written_without_cpp(project: dict[str, Any]) -> None:
    # Its weights were taken from the RTNeural JSON writer, which refuses a stride: now per layer.
    from modelreg.rtneural.header import RTNeuralCppExporter

    spec = load_registry(project["folder"] / "registry.toml")["conv_embedded"]
    path = project["folder"] / "conv_embedded.h"
    RTNeuralCppExporter().export(spec, load_checkpoint(spec), path)
    text = path.read_text()
    assert "RTNeural::StridedConv1DT<float, 4, 6, 2, 1, 2, 1>" in text and "kChunk0" in text
    assert RTNeuralCppExporter().check_artifact(spec, path) == []
