"""Checkpoints: safe loading, pins, architecture mismatches, seeded init."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from modelreg import CheckpointError, load_registry
from modelreg.checkpoint import init_checkpoint
from modelreg.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _spec(path, name="tinylstm"):
    return load_registry(path)[name]


def test_loads_and_matches(tiny_registry):
    module = _spec(tiny_registry).load()
    assert not module.training
    saved = torch.load(_spec(tiny_registry).checkpoint, weights_only=True)
    for key, tensor in module.state_dict().items():
        assert torch.equal(tensor, saved[key])


def test_missing_file(tiny_registry):
    spec = _spec(tiny_registry)
    spec.checkpoint.unlink()
    with pytest.raises(CheckpointError, match=r"tinylstm.pt: models.tinylstm.checkpoint: checkpoint file not found; run `modelreg init`"):
        spec.load()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "checkpoint file is empty"),
        (b"this is not a checkpoint\n", "not a readable PyTorch checkpoint"),
    ],
)
def test_unreadable_files(tiny_registry, content, message):
    spec = _spec(tiny_registry)
    spec.checkpoint.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as info:
        spec.load()
    assert info.value.model == "tinylstm"


def test_truncated_checkpoint(tiny_registry):
    spec = _spec(tiny_registry)
    data = spec.checkpoint.read_bytes()
    spec.checkpoint.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        spec.load()


class _Exploit:
    """Unpickling this would create a marker file: code execution."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused_and_nothing_runs(tiny_registry, tmp_path):
    spec = _spec(tiny_registry)
    marker = tmp_path / "pwned"
    torch.save({"layers.0.weight": _Exploit(str(marker))}, spec.checkpoint)
    with pytest.raises(CheckpointError, match="refused to load: the file holds objects other than tensors"):
        spec.load()
    assert not marker.exists()
    # The same file through plain pickle.load would have run the command: the test is real.
    with open(spec.checkpoint, "rb") as handle:
        import zipfile

        with zipfile.ZipFile(handle) as archive:
            payload = next(n for n in archive.namelist() if n.endswith("data.pkl"))
            pickle.loads(archive.read(payload))
    assert marker.exists()


def test_not_a_state_dict(tiny_registry):
    spec = _spec(tiny_registry)
    torch.save([torch.zeros(2)], spec.checkpoint)
    with pytest.raises(CheckpointError, match=r"checkpoint is not a state dict \(expected a dict of tensor name to tensor, found 'list'\)"):
        spec.load()


def test_every_mismatch_is_listed_together(tiny_registry):
    spec = _spec(tiny_registry)
    state = torch.load(spec.checkpoint, weights_only=True)
    del state["layers.1.bias_hh_l0"]
    state["layers.0.weight"] = torch.zeros(4, 7)
    state["layers.0.bias"] = state["layers.0.bias"].double()
    state["layers.9.weight"] = torch.zeros(1)
    torch.save(state, spec.checkpoint)
    with pytest.raises(CheckpointError) as info:
        spec.load()
    text = str(info.value)
    assert text.startswith("4 problems:")
    assert "layers.1.bias_hh_l0: missing tensor (expected shape [8])" in text
    assert "layers.9.weight: unexpected tensor (not part of this architecture) (found [1])" in text
    assert "layers.0.weight: tensor has the wrong shape (expected shape [4, 3], found [4, 7])" in text
    assert "layers.0.bias: tensor has the wrong dtype (expected float32, found float64)" in text
    assert {p.model for p in info.value.problems} == {"tinylstm"}
    # One hint after them, and it survives the trip to and from a --jobs worker.
    hint = "hint: the checkpoint was saved for other layers than models.tinylstm declares"
    assert text.count("hint:") == 1 and f"\n  {hint}" in text and "modelreg init --force tinylstm" in text
    assert str(pickle.loads(pickle.dumps(info.value))) == text


def test_a_misfit_checkpoint_is_reported_once_per_export(tiny_registry, capsys):
    # Every format of the model needs the module: the checkpoint's problems are listed
    # with the first, and the others say they were not exported because of it.
    tiny_registry.write_text(tiny_registry.read_text().replace("exports = []", 'exports = ["rtneural", "onnx"]'))
    spec = _spec(tiny_registry)
    state = torch.load(spec.checkpoint, weights_only=True)
    state["layers.0.weight"] = torch.zeros(4, 7)
    torch.save(state, spec.checkpoint)
    assert main(["export", "--registry", str(tiny_registry), "tinylstm"]) == 1
    out = capsys.readouterr().out
    assert out.count("tensor has the wrong shape") == 1 and out.count("hint: ") == 1, out
    assert "FAIL  tinylstm (onnx): not exported: the checkpoint does not load (see above)" in out


def test_pin_mismatch(tiny_registry):
    text = tiny_registry.read_text().replace(
        'checkpoint = "models/tinylstm.pt"', 'checkpoint = "models/tinylstm.pt"\nsha256 = "' + "0" * 64 + '"'
    )
    tiny_registry.write_text(text)
    with pytest.raises(CheckpointError, match=r"models.tinylstm.sha256: checkpoint does not match its pinned sha256"):
        _spec(tiny_registry).load()


def test_init_is_bit_identical_to_the_bundled_checkpoints(tmp_path, bundled_copy):
    # Regenerate every bundled checkpoint elsewhere: same seed -> identical tensors and bytes.
    registry = load_registry(bundled_copy)
    for spec in registry.values():
        spec.checkpoint.unlink()
        result = init_checkpoint(spec, seed=0)
        assert result.action == "written"
        assert result.pin_ok is True, spec.name
        fresh = torch.load(spec.checkpoint, weights_only=True)
        shipped = torch.load(ROOT / "models" / f"{spec.name}.pt", weights_only=True)
        assert fresh.keys() == shipped.keys()
        for key in fresh:
            assert torch.equal(fresh[key], shipped[key]), (spec.name, key)


def test_init_keeps_existing_unless_forced(tiny_registry, capsys):
    spec = _spec(tiny_registry)
    before = spec.checkpoint.read_bytes()
    assert init_checkpoint(spec, seed=3).action == "kept"
    assert spec.checkpoint.read_bytes() == before
    assert init_checkpoint(spec, seed=3, force=True).action == "written"
    assert spec.checkpoint.read_bytes() != before


def test_cli_init_reports_pin_mismatch(tiny_registry, capsys):
    text = tiny_registry.read_text().replace(
        'checkpoint = "models/tinygru.pt"', 'checkpoint = "models/tinygru.pt"\nsha256 = "' + "a" * 64 + '"'
    )
    tiny_registry.write_text(text)
    code = main(["init", "--registry", str(tiny_registry)])
    out = capsys.readouterr().out
    assert code == 1
    assert "kept" in out and "pinned sha256 differs: set models.tinygru.sha256" in out


# ---------------------------------------------------------------- state-dict layout, weights from elsewhere


def test_state_dict_layout_is_as_documented(tmp_path):
    """README "Checkpoints": key names and shapes per layer type (PyTorch's own, under layers.{i})."""
    from conftest import write_registry

    registry = write_registry(tmp_path, text="""
        [models.mix]
        description = "one of each layer type"
        input_shape = [1, 3]
        output_shape = [1, 2]
        dtype = "float32"
        params = 290
        latency_ms = 50.0
        exports = []
        checkpoint = "mix.pt"
        layers = [
            { type = "dense", units = 4, activation = "tanh" },
            { type = "lstm", units = 5 },
            { type = "gru", units = 2 },
        ]
        """)
    state = load_registry(registry)["mix"].build().state_dict()
    layout = {key: list(tensor.shape) for key, tensor in state.items()}
    assert layout == {
        "layers.0.weight": [4, 3], "layers.0.bias": [4],                      # dense: [units, in], [units]
        "layers.1.weight_ih_l0": [20, 4], "layers.1.weight_hh_l0": [20, 5],   # lstm: [4*units, in], [4*units, units]
        "layers.1.bias_ih_l0": [20], "layers.1.bias_hh_l0": [20],
        "layers.2.weight_ih_l0": [6, 5], "layers.2.weight_hh_l0": [6, 2],     # gru: [3*units, in], [3*units, units]
        "layers.2.bias_ih_l0": [6], "layers.2.bias_hh_l0": [6],
    }
    assert all(tensor.dtype == torch.float32 for tensor in state.values())
    readme = (ROOT / "README.md").read_text()
    for key in ("layers.{i}.weight", "layers.{i}.bias", "layers.{i}.weight_ih_l0", "layers.{i}.weight_hh_l0",
                "layers.{i}.bias_ih_l0", "layers.{i}.bias_hh_l0"):
        assert f"`{key}`" in readme, key


def test_weights_trained_elsewhere_load_after_the_documented_renaming(tiny_registry):
    """README recipe: fill spec.build()'s state_dict() layout, torch.save it, and the model loads."""
    torch.manual_seed(3)
    trained = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3), torch.nn.Softmax(-1))
    spec = load_registry(tiny_registry)["tinydense"]

    torch.save(trained.state_dict(), spec.checkpoint)  # its own names: refused, every tensor listed
    with pytest.raises(CheckpointError) as info:
        spec.load()
    assert "0.weight: unexpected tensor" in str(info.value) and "layers.0.weight: missing tensor" in str(info.value)

    module = spec.build()
    module.load_state_dict({"layers.0.weight": trained[0].weight, "layers.0.bias": trained[0].bias,
                            "layers.1.weight": trained[2].weight, "layers.1.bias": trained[2].bias})
    torch.save(module.state_dict(), spec.checkpoint)
    x = torch.randn(7, 4)
    with torch.no_grad():
        assert torch.allclose(spec.load()(x), trained(x), atol=1e-6)


def test_nested_state_dict_gets_a_hint_to_unwrap_it(tiny_registry):
    spec = _spec(tiny_registry, "tinydense")
    state = torch.load(spec.checkpoint, weights_only=True)
    torch.save({"state_dict": state, "epoch": 12}, spec.checkpoint)  # a training loop's checkpoint
    with pytest.raises(CheckpointError) as info:
        spec.load()
    text = str(info.value)
    assert "checkpoint is not a state dict: its tensors are nested under 'state_dict'" in text, text
    assert "torch.save(checkpoint['state_dict'], PATH)" in text
    # Following the hint works.
    torch.save(torch.load(spec.checkpoint, weights_only=True)["state_dict"], spec.checkpoint)
    spec.load()


def test_prefixed_tensor_names_get_a_hint_to_strip_the_prefix(tiny_registry):
    spec = _spec(tiny_registry, "tinydense")
    state = torch.load(spec.checkpoint, weights_only=True)
    torch.save({f"model.{key}": value for key, value in state.items()}, spec.checkpoint)
    with pytest.raises(CheckpointError) as info:
        spec.load()
    text = str(info.value)
    assert "every tensor name carries the prefix 'model.'" in text, text
    assert "layers.0.weight: missing tensor" in text  # the listing is still complete
    assert "hint:" not in text  # the layers are right: "saved for other layers" would mislead


def test_a_checkpoint_torch_loads_with_a_warning_loads_quietly(tiny_registry, capsys):
    # A torch.save file whose pickle protocol byte was changed still loads; torch warns
    # about it with its own source line, which `modelreg validate` printed before its verdict.
    import warnings

    spec = load_registry(tiny_registry)["tinydense"]
    raw = bytearray(spec.checkpoint.read_bytes())
    protocol = raw.find(b"\x80\x02", raw.find(b"data.pkl"))
    raw[protocol + 1] = 0xD0
    spec.checkpoint.write_bytes(bytes(raw))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module = spec.load()
    assert module.checkpoint_sha256 is not None
    assert main(["validate", "--registry", str(tiny_registry), "tinydense", "--latency-seconds", "0.01"]) == 0
    assert "Warning" not in capsys.readouterr().err
