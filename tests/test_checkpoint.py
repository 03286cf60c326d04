"""Checkpoints: safe loading, pins, architecture mismatches, seeded init."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import pytest
import torch

from modelreg import CheckpointError, load_registry
from modelreg.checkpoint import init_checkpoint
from modelreg.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


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
    state["layers.0.bias"] = state["layers.0.bias"].double() + 1e-12  # values float32 cannot hold
    state["layers.9.weight"] = torch.zeros(1)
    torch.save(state, spec.checkpoint)
    with pytest.raises(CheckpointError) as info:
        spec.load()
    text = str(info.value)
    assert text.startswith("4 problems:")
    assert "layers.1.bias_hh_l0: missing tensor (expected shape [8])" in text
    assert "layers.9.weight: unexpected tensor (not part of this architecture) (found [1])" in text
    assert "layers.0.weight: tensor has the wrong shape (expected shape [4, 3], found [4, 7])" in text
    assert ("layers.0.bias: tensor is float64, and rounding it to float32 changes 4 of its 4 values "
            "(by up to 1e-12) (expected float32, found float64)") in text
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
    """docs/checkpoints.md: key names and shapes per layer type (PyTorch's own, under layers.{i})."""
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
    page = (DOCS / "checkpoints.md").read_text()
    for key in ("layers.{i}.weight", "layers.{i}.bias", "layers.{i}.weight_ih_l0", "layers.{i}.weight_hh_l0",
                "layers.{i}.bias_ih_l0", "layers.{i}.bias_hh_l0"):
        assert f"`{key}`" in page, key


def test_weights_trained_elsewhere_load_after_the_documented_renaming(tiny_registry):
    """docs/checkpoints.md recipe: fill spec.build()'s state_dict() layout, torch.save it, and the model loads."""
    torch.manual_seed(3)
    trained = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3), torch.nn.Softmax(-1))
    spec = load_registry(tiny_registry)["tinydense"]

    torch.save(trained.state_dict(), spec.checkpoint)  # its own names: refused, the pairing shown
    with pytest.raises(CheckpointError) as info:
        spec.load()
    assert "0.* -> layers.0.*, 2.* -> layers.1.*" in str(info.value)

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


# ---------------------------------------------------------------- what a checkpoint that does not load is told


BNNET = """
    [models.bnnet]
    description = "dense, batchnorm, gru, dense"
    input_shape = [1, 4]
    output_shape = [1, 3]
    dtype = "float32"
    params = 201
    latency_ms = 50.0
    exports = []
    checkpoint = "models/bnnet.pt"
    layers = [
        { type = "dense", units = 6, activation = "linear" },
        { type = "batchnorm" },
        { type = "gru", units = 4 },
        { type = "dense", units = 3, activation = "softmax" },
    ]
    """


def _bnnet(tmp_path):
    from conftest import write_registry

    registry = write_registry(tmp_path / "project", text=BNNET)
    spec = load_registry(registry)["bnnet"]
    init_checkpoint(spec, seed=0)
    return registry, spec


class _Net(torch.nn.Module):
    """The user's own training module: the same layers as models.bnnet, under its own names."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.fc1 = torch.nn.Linear(4, 6)
        self.bn = torch.nn.BatchNorm1d(6)
        self.rnn = torch.nn.GRU(6, 4, batch_first=True)
        self.head = torch.nn.Linear(4, 3)
        with torch.no_grad():  # trained statistics, not torch's 0 and 1
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)


def _trained(layout: str) -> dict[str, torch.Tensor]:
    net = _Net()
    if layout == "own":
        return net.state_dict()
    sequential = torch.nn.Sequential(net.fc1, net.bn, net.rnn, net.head)
    if layout == "sequential":
        return sequential.state_dict()
    wrapper = torch.nn.Module()
    wrapper.net = sequential
    return wrapper.state_dict()  # net.0.weight, ...


@pytest.mark.parametrize(("layout", "pairing"), [
    ("sequential", "0.* -> layers.0.*, 1.* -> layers.1.*, 2.* -> layers.2.*, 3.* -> layers.3.*"),
    ("wrapped", "net.0.* -> layers.0.*, net.1.* -> layers.1.*, net.2.* -> layers.2.*, net.3.* -> layers.3.*"),
    ("own", "fc1.* -> layers.0.*, bn.* -> layers.1.*, rnn.* -> layers.2.*, head.* -> layers.3.*"),
])
def test_names_that_fit_by_order_and_shape_get_the_rename_not_init_force(tmp_path, layout, pairing, monkeypatch):
    # Issue 23: such a checkpoint was told "saved for other layers ... modelreg init --force",
    # and init --force replaced the trained weights.
    registry, spec = _bnnet(tmp_path)
    monkeypatch.chdir(registry.parent)
    state = _trained(layout)
    torch.save(state, spec.checkpoint)
    with pytest.raises(CheckpointError) as info:
        spec.load()  # never loaded on a guess
    text = str(info.value)
    assert text.startswith(f"models/bnnet.pt: models.bnnet.checkpoint: the tensor names are not models.bnnet's, "
                           f"but the tensors fit them one-to-one in order and shape: {pairing}\n"), text
    assert "init --force" not in text and "saved for other layers" not in text
    assert "missing tensor" not in text  # the pairing says it all: no list of every name twice

    # The hint's rename, run as written, makes the file load, and the model is the user's.
    code = re.search(r"`(names = .*; torch\.save\(state, PATH\))`", info.value.hint)[1]
    exec(code.replace("PATH", repr(str(spec.checkpoint))), {"torch": torch, "state": state})
    module = spec.load()
    net = _Net().eval()
    x = torch.randn(5, 4)
    with torch.no_grad():
        mine = torch.softmax(net.head(net.rnn(net.bn(net.fc1(x)).unsqueeze(1))[0][:, 0]), -1)
        assert torch.allclose(module(x), mine, atol=1e-6)


def test_a_pairing_by_order_is_never_applied_silently(tmp_path):
    # Two same-shaped layers defined in another order than they run: by order, they pair
    # wrongly. That is why the pairing is shown to be checked, and the file is not loaded.
    from conftest import write_registry

    registry = write_registry(tmp_path / "project", text="""
        [models.two]
        description = "two 4 -> 4 dense layers"
        input_shape = [1, 4]
        output_shape = [1, 4]
        dtype = "float32"
        params = 40
        latency_ms = 50.0
        exports = []
        checkpoint = "two.pt"
        layers = [
            { type = "dense", units = 4, activation = "tanh" },
            { type = "dense", units = 4, activation = "linear" },
        ]
        """)
    spec = load_registry(registry)["two"]

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.out = torch.nn.Linear(4, 4)     # defined first, runs second
            self.hidden = torch.nn.Linear(4, 4)

    torch.save(Net().state_dict(), spec.checkpoint)
    with pytest.raises(CheckpointError) as info:
        spec.load()
    assert "out.* -> layers.0.*, hidden.* -> layers.1.*" in str(info.value)
    assert "check that pairing (it follows the order of the tensors in the file)" in info.value.hint


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_a_checkpoint_whose_values_are_all_float32_values_loads(tiny_registry, dtype):
    spec = _spec(tiny_registry, "tinydense")
    state = {key: value.to(dtype) for key, value in spec.load().state_dict().items()}
    torch.save(state, spec.checkpoint)  # float16 always converts exactly; float64 here holds float32 values
    module = spec.load()
    for key, value in module.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, state[key].float()), key


def test_a_float64_checkpoint_that_would_round_is_refused_with_the_float_hint(tiny_registry, monkeypatch):
    monkeypatch.chdir(tiny_registry.parent)
    spec = _spec(tiny_registry, "tinydense")
    state = {key: value.double() for key, value in spec.load().state_dict().items()}
    state["layers.1.weight"][0, 0] += 1e-10  # one value float32 cannot hold
    torch.save(state, spec.checkpoint)
    with pytest.raises(CheckpointError) as info:
        spec.load()
    text = str(info.value)
    assert text.startswith("models/tinydense.pt: layers.1.weight: tensor is float64, and rounding it to float32 "
                           "changes 1 of its 15 values (by up to 1e-10) (expected float32, found float64)\n"), text
    assert info.value.hint == ("call `.float()` before saving (`torch.save(model.float().state_dict(), PATH)`) "
                               "to store layers.1.weight as float32: modelreg converts a tensor only when no value "
                               "changes")
    assert "init --force" not in text and "saved for other layers" not in text
    # The pairing and the float hint together, named as in the file.
    torch.save({key.replace("layers.1.", "out.").replace("layers.0.", "hidden."): value
                for key, value in state.items()}, spec.checkpoint)
    with pytest.raises(CheckpointError) as info:
        spec.load()
    assert "out.weight: tensor is float64, and rounding it to float32 changes 1 of its 15 values" in str(info.value)
    assert "; and call `.float()` before saving" in info.value.hint and "to store out.weight as float32" in info.value.hint


def test_a_batchnorm_checkpoint_without_num_batches_tracked_loads(tmp_path):
    # docs/registry.md: inference never reads the counter; a file without it is the same model.
    _, spec = _bnnet(tmp_path)
    saved = torch.load(spec.checkpoint, weights_only=True)
    torch.save({key: value for key, value in saved.items() if not key.endswith("num_batches_tracked")},
               spec.checkpoint)
    module = spec.load()
    for key, value in saved.items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(module.state_dict()[key], value), key


def test_a_batchnorm2d_checkpoint_with_torchs_counter_loads(tmp_path):
    # nn.BatchNorm2d saves num_batches_tracked; modelreg's batchnorm2d keeps none.
    from conftest import write_registry

    registry = write_registry(tmp_path / "project", text="""
        [models.bn2]
        description = "dense, batchnorm2d over 4 features x 2 filters"
        input_shape = [1, 8]
        output_shape = [1, 8]
        dtype = "float32"
        params = 76
        latency_ms = 50.0
        exports = []
        checkpoint = "bn2.pt"
        layers = [
            { type = "dense", units = 8, activation = "tanh" },
            { type = "batchnorm2d", num_features_in = 4 },
        ]
        """)
    spec = load_registry(registry)["bn2"]
    init_checkpoint(spec)
    state = torch.load(spec.checkpoint, weights_only=True)
    state["layers.1.num_batches_tracked"] = torch.tensor(120)
    torch.save(state, spec.checkpoint)
    spec.load()


def test_only_shapes_that_do_not_fit_recommend_init_force(tmp_path):
    _, spec = _bnnet(tmp_path)
    state = torch.load(spec.checkpoint, weights_only=True)
    state["layers.3.weight"] = torch.zeros(3, 5)
    torch.save(state, spec.checkpoint)
    with pytest.raises(CheckpointError) as info:
        spec.load()
    assert "run `modelreg init --force bnnet`" in info.value.hint
    assert "keeps this file as a timestamped backup" in info.value.hint


# ---------------------------------------------------------------- init --force keeps what it replaces


def test_init_force_keeps_the_replaced_checkpoint_as_a_backup(tmp_path, capsys, monkeypatch):
    import modelreg.checkpoint as checkpoint

    registry, spec = _bnnet(tmp_path)
    trained = _trained("sequential")
    torch.save(trained, spec.checkpoint)
    before = spec.checkpoint.read_bytes()
    monkeypatch.setattr(checkpoint, "_utc_stamp", lambda: "20261205T041600Z")
    monkeypatch.chdir(registry.parent)

    assert main(["init", "--force", "--registry", str(registry)]) == 0
    backup = spec.checkpoint.with_name("bnnet.pt.bak-20261205T041600Z")
    assert capsys.readouterr().out.endswith(
        "\n        the previous checkpoint is kept as models/bnnet.pt.bak-20261205T041600Z\n")
    assert backup.read_bytes() == before
    assert spec.checkpoint.read_bytes() != before
    # In the same second again, with other weights: a new name, the first backup untouched.
    seeded = spec.checkpoint.read_bytes()
    result = init_checkpoint(spec, seed=1, force=True)
    assert result.backup == spec.checkpoint.with_name("bnnet.pt.bak-20261205T041600Z-2")
    assert result.backup.read_bytes() == seeded and backup.read_bytes() == before
    # Writing the very bytes that are there already loses nothing: no backup.
    assert init_checkpoint(spec, seed=1, force=True).backup is None
    assert sorted(p.name for p in spec.checkpoint.parent.iterdir()) == [
        "bnnet.pt", "bnnet.pt.bak-20261205T041600Z", "bnnet.pt.bak-20261205T041600Z-2"]  # no temporary left

    # The backups are not checkpoints to modelreg: validate uses models/bnnet.pt, and
    # check says what a backup is.
    assert main(["validate", "--registry", str(registry), "--latency-seconds", "0.01", "--no-write"]) == 0
    capsys.readouterr()
    assert main(["check", str(backup)]) == 2
    assert "a checkpoint that `modelreg init --force` replaced, kept as a backup" in capsys.readouterr().err


def test_init_force_without_a_backup_replaces_nothing(tmp_path, monkeypatch):
    import modelreg.checkpoint as checkpoint
    from modelreg.errors import WriteError

    _, spec = _bnnet(tmp_path)
    torch.save(_trained("own"), spec.checkpoint)
    before = spec.checkpoint.read_bytes()

    def full_disk(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "write_backup", full_disk)
    with pytest.raises(WriteError, match="cannot keep a backup of the checkpoint, so it was not replaced"):
        init_checkpoint(spec, force=True)
    assert spec.checkpoint.read_bytes() == before


def test_cli_init_says_what_a_kept_checkpoint_needs(tmp_path, capsys):
    registry, spec = _bnnet(tmp_path)
    torch.save(_trained("sequential"), spec.checkpoint)
    assert main(["init", "--registry", str(registry)]) == 1
    out = capsys.readouterr().out
    assert "fit them one-to-one in order and shape: 0.* -> layers.0.*" in out
    assert "\n        hint: check that pairing" in out and "init --force" not in out

    state = {key: value.double() if value.is_floating_point() else value
             for key, value in torch.load(_bnnet(tmp_path / "other")[1].checkpoint, weights_only=True).items()}
    state["layers.0.bias"] += 1e-12
    torch.save(state, spec.checkpoint)
    assert main(["init", "--registry", str(registry)]) == 1
    out = capsys.readouterr().out
    assert "layers.0.bias: tensor is float64" in out and "\n        hint: call `.float()` before saving" in out
    assert "init --force" not in out

    torch.save({key: value.half() if value.is_floating_point() else value
                for key, value in state.items() if not key.endswith("num_batches_tracked")}, spec.checkpoint)
    assert main(["init", "--registry", str(registry)]) == 0  # float16, no counter: fits
    assert "does not fit" not in capsys.readouterr().out
