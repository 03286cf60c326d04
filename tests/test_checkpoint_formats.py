"""Checkpoint formats (issue 19, section 3): JSON state dicts and .safetensors beside torch.save's
files, every malformed file with one clear message; and the user's own tensor names
(``checkpoint_names``: a declared table, or ``"match"`` by shape)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import struct
from pathlib import Path

import numpy as np
import orjson
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from conftest import TINY_REGISTRY, write_registry
from modelreg import CheckpointError, load_registry
from modelreg.checkpoint import init_checkpoint
from modelreg.cli import main

FORMATS = ("pt", "json", "safetensors")


def _registry(tmp_path: Path, ext: str, text: str = TINY_REGISTRY) -> Path:
    """The tiny registry with its checkpoints named ``.ext`` (not written yet)."""
    return write_registry(tmp_path / ext, text=text.replace('.pt"', f'.{ext}"'))


def _spec(registry: Path, name: str = "tinylstm"):
    return load_registry(registry)[name]


def _json_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """What a PyTorch user writes for RTNeural's torch_helpers (issue 19's recipe)."""
    return json.dumps({key: value.tolist() for key, value in state.items()}).encode()


def _seeded(spec) -> dict[str, torch.Tensor]:
    from modelreg.builder import build_module

    return build_module(spec, seed=0).state_dict()


# ---------------------------------------------------------------- reading and writing each format


@pytest.mark.parametrize("ext", FORMATS)
def test_init_writes_the_format_its_extension_names_deterministically(tmp_path, ext):
    registry = _registry(tmp_path, ext)
    for name in ("tinydense", "tinylstm", "tinygru"):
        spec = _spec(registry, name)
        first = init_checkpoint(spec)
        data = spec.checkpoint.read_bytes()
        spec.checkpoint.unlink()
        second = init_checkpoint(spec)
        assert spec.checkpoint.read_bytes() == data and first.sha256 == second.sha256 == hashlib.sha256(data).hexdigest()
        # Each file is what its format's own reader reads, with the seeded weights bit for bit.
        if ext == "json":
            read = {key: torch.tensor(value) for key, value in json.loads(data).items()}
        elif ext == "safetensors":
            read = st_load(data)
        else:
            assert data.startswith(b"PK\x03\x04")
            read = torch.load(spec.checkpoint, weights_only=True)
        seeded = _seeded(spec)
        assert list(read) == list(seeded) or ext == "safetensors"
        for key, value in seeded.items():
            assert torch.equal(read[key].to(value.dtype), value), key
        module = spec.load()
        for key, value in module.state_dict().items():
            assert torch.equal(value, seeded[key]), key


@pytest.mark.parametrize("ext", ("json", "safetensors"))
def test_a_users_file_in_either_format_loads_like_the_pt(tmp_path, ext):
    registry = _registry(tmp_path, ext)
    spec = _spec(registry)
    torch.manual_seed(3)
    state = {key: torch.randn_like(value) for key, value in _seeded(spec).items()}
    spec.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    spec.checkpoint.write_bytes(_json_bytes(state) if ext == "json" else st_save(state))
    module = spec.load()
    assert module.checkpoint_sha256 == hashlib.sha256(spec.checkpoint.read_bytes()).hexdigest()
    for key, value in module.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, state[key]), key


@pytest.mark.parametrize("ext", ("json", "safetensors"))
def test_the_sha256_pin_holds_for_every_format(tmp_path, ext):
    registry = _registry(tmp_path, ext)
    spec = _spec(registry)
    init_checkpoint(spec)
    text = registry.read_text().replace(f'checkpoint = "models/tinylstm.{ext}"',
                                        f'checkpoint = "models/tinylstm.{ext}"\nsha256 = "{"0" * 64}"')
    registry.write_text(text)
    with pytest.raises(CheckpointError, match=r"models.tinylstm.sha256: checkpoint does not match its pinned sha256"):
        _spec(registry).load()


def test_json_numbers_written_as_float32_decimals_load_and_float64_digits_are_refused(tmp_path, monkeypatch):
    registry = _registry(tmp_path, "json")
    monkeypatch.chdir(registry.parent)
    spec = _spec(registry, "tinydense")
    state = {key: torch.randn_like(value) for key, value in _seeded(spec).items()}
    spec.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    # The shortest decimals of float32 values (0.1 for float32(0.1)): as doubles they are no float32
    # values, but each names one, as numpy, orjson and modelreg's RTNeural exporter write them.
    spec.checkpoint.write_bytes(orjson.dumps({k: v.numpy() for k, v in state.items()}, option=orjson.OPT_SERIALIZE_NUMPY))
    assert b"0.1000000014901" not in spec.checkpoint.read_bytes()
    for key, value in spec.load().state_dict().items():
        assert torch.equal(value, state[key]), key

    # A float64 tensor's digits: rounding is the user's call, as for a float64 .pt file.
    wide = {key: value.double() for key, value in state.items()}
    wide["layers.1.weight"][0, 0] += 1e-10
    spec.checkpoint.write_bytes(_json_bytes(wide))
    with pytest.raises(CheckpointError) as info:
        spec.load()
    assert str(info.value).startswith("models/tinydense.json: layers.1.weight: tensor is float64, and rounding it "
                                      "to float32 changes 1 of its 15 values"), str(info.value)
    assert "json.dump({k: v.tolist() for k, v in model.float().state_dict().items()}" in info.value.hint


def test_safetensors_dtypes_follow_the_pt_rules(tmp_path, monkeypatch):
    registry = _registry(tmp_path, "safetensors")
    monkeypatch.chdir(registry.parent)
    spec = _spec(registry, "tinydense")
    seeded = _seeded(spec)
    spec.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    spec.checkpoint.write_bytes(st_save({key: value.half() for key, value in seeded.items()}))
    for key, value in spec.load().state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, seeded[key].half().float()), key
    wide = {key: value.double() for key, value in seeded.items()}
    wide["layers.0.bias"][0] += 1e-10
    spec.checkpoint.write_bytes(st_save(wide))
    with pytest.raises(CheckpointError, match=r"layers.0.bias: tensor is float64, and rounding") as info:
        spec.load()
    assert "safetensors.torch.save_file(model.float().state_dict(), PATH)" in info.value.hint


@pytest.mark.parametrize("ext", ("json", "safetensors"))
def test_the_hints_of_pt_files_hold_for_every_format(tmp_path, monkeypatch, ext):
    registry = _registry(tmp_path, ext)
    monkeypatch.chdir(registry.parent)
    spec = _spec(registry)
    seeded = _seeded(spec)
    spec.checkpoint.parent.mkdir(parents=True, exist_ok=True)

    def write(state):
        spec.checkpoint.write_bytes(_json_bytes(state) if ext == "json" else st_save(state))

    write({f"model.{key}": value for key, value in seeded.items()})
    with pytest.raises(CheckpointError, match="every tensor name carries the prefix 'model.'"):
        spec.load()
    write({**seeded, "layers.0.weight": torch.zeros(4, 7)})
    with pytest.raises(CheckpointError) as info:
        spec.load()
    assert "layers.0.weight: tensor has the wrong shape (expected shape [4, 3], found [4, 7])" in str(info.value)
    assert f"modelreg init --force tinylstm" in info.value.hint


def test_a_batchnorm_counter_may_be_missing_or_a_json_number(tmp_path):
    from test_checkpoint import BNNET

    registry = write_registry(tmp_path / "bn", text=BNNET.replace('.pt"', '.json"'))
    spec = load_registry(registry)["bnnet"]
    seeded = _seeded(spec)
    spec.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    spec.checkpoint.write_bytes(_json_bytes(seeded))  # num_batches_tracked: a bare 0
    assert b'"layers.1.num_batches_tracked": 0' in spec.checkpoint.read_bytes()
    spec.load()
    spec.checkpoint.write_bytes(_json_bytes({k: v for k, v in seeded.items() if "num_batches" not in k}))
    spec.load()


# ---------------------------------------------------------------- malformed files: one message each

MALFORMED_JSON = [
    (b'{"layers.0.weight": [[1.0, 2.0], [3.0,', "not valid JSON: Expecting value", "models.tinylstm.checkpoint"),
    (b"[[1.0]]", "not a JSON state dict (expected an object of tensor name to number or nested lists of numbers, "
                 "found a JSON array)", "models.tinylstm.checkpoint"),
    (b'{"layers.0.weight": [[1.0, 2.0, 3.0], [1.0, 2.0]]}', "ragged nested lists: a tensor's rows must all have one "
     "shape (expected a list of shape [3] (like entry 0), found a list of shape [2])", "layers.0.weight[1]"),
    (b'{"layers.0.weight": [[1.0, [2.0], 3.0]]}', "ragged nested lists", "layers.0.weight[0][1]"),
    (b'{"layers.0.weight": [[1.0, "2.0", 3.0]]}', "not a number (expected a number or a list of numbers, "
     "found '2.0' (a JSON string))", "layers.0.weight[0][1]"),
    (b'{"layers.0.weight": [[1.0, true]]}', "not a number", "layers.0.weight[0][1]"),
    (b'{"layers.0.bias": [null, 1.0]}', "found None (a JSON null)", "layers.0.bias[0]"),
    (b'{"layers.0.bias": {"data": [1.0]}}', "checkpoint is not a state dict: its tensors are nested under "
     "'layers.0.bias'", "models.tinylstm.checkpoint"),
    (b'{"layers.0.bias": [1' + b"0" * 400 + b"]}", "number too large for any float", "layers.0.bias[0]"),
    (b'{"in_shape": [null, 3], "layers": []}', "this is an RTNeural model file (in_shape and layers), not a "
     "state dict: `modelreg import FILE`", "models.tinylstm.checkpoint"),
    (b"\xff\xfe{}", "not a JSON state dict: the file is not UTF-8 text", "models.tinylstm.checkpoint"),
]


def _load_refused(tmp_path, monkeypatch, suffix: str, content: bytes) -> CheckpointError:
    """What loading tinylstm's checkpoint, a file of ``content`` ending in ``.suffix``, raises."""
    registry = _registry(tmp_path, suffix)
    monkeypatch.chdir(registry.parent)
    spec = _spec(registry)
    spec.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    spec.checkpoint.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        spec.load()
    return info.value


@pytest.mark.parametrize(("content", "message", "key"), MALFORMED_JSON)
def test_a_malformed_json_checkpoint_gets_one_clear_message(tmp_path, monkeypatch, content, message, key):
    error = _load_refused(tmp_path, monkeypatch, "json", content)
    assert len(error.problems) == 1
    problem = error.problems[0]
    assert (problem.file, problem.model, problem.key) == ("models/tinylstm.json", "tinylstm", key)
    assert message in str(problem), str(problem)


def test_bad_json_says_where(tmp_path, monkeypatch):
    error = _load_refused(tmp_path, monkeypatch, "json", b'{"layers.0.bias":\n  [1.0,, 2.0]}')
    assert str(error) == "models/tinylstm.json:2:8: models.tinylstm.checkpoint: not valid JSON: Expecting value"


def _safetensors(header: dict, data: bytes, length: int | None = None) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


F32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
MALFORMED_SAFETENSORS = [
    (b"\x00" * 5, "not a safetensors file: too short for the header length (expected an 8-byte little-endian "
                  "header length, a JSON header, then the tensors' bytes, found 5 bytes)",
     "models.tinylstm.checkpoint"),
    (_safetensors({"b": F32}, b"\x00" * 8, length=10**6), "safetensors header length runs past the end of the file",
     "models.tinylstm.checkpoint"),
    (struct.pack("<Q", 6) + b"{nope}" + b"\x00" * 8, "safetensors header is not valid JSON",
     "models.tinylstm.checkpoint"),
    (_safetensors([1, 2], b""), "safetensors header is not a JSON object", "models.tinylstm.checkpoint"),
    (_safetensors({"b": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 8]}}, b"\x00" * 8),
     "safetensors header contradicts itself: the tensor's dtype and shape need another number of bytes than its "
     "data_offsets span (expected 16 bytes (F32 of shape [2, 2]), found 8 bytes)", "b"),
    (_safetensors({"b": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\x00" * 8),
     "safetensors header gives this tensor bytes outside the file's data (expected 0 <= begin <= end <= 8, "
     "found data_offsets [0, 16])", "b"),
    (_safetensors({"b": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}}, b"\x00" * 8),
     "safetensors header entry is malformed", "b"),
    # Two tensors over the same bytes: the header's entries are each fine, the safetensors package refuses.
    (_safetensors({"a": F32, "b": F32}, b"\x00" * 8), "not a readable safetensors file", "models.tinylstm.checkpoint"),
]


@pytest.mark.parametrize(("content", "message", "key"), MALFORMED_SAFETENSORS)
def test_a_malformed_safetensors_checkpoint_gets_one_clear_message(tmp_path, monkeypatch, content, message, key):
    error = _load_refused(tmp_path, monkeypatch, "safetensors", content)
    assert len(error.problems) == 1
    problem = error.problems[0]
    assert (problem.file, problem.model, problem.key) == ("models/tinylstm.safetensors", "tinylstm", key)
    assert message in str(problem), str(problem)


def test_a_truncated_safetensors_file_is_refused(tmp_path):
    registry = _registry(tmp_path, "safetensors")
    spec = _spec(registry)
    init_checkpoint(spec)
    data = spec.checkpoint.read_bytes()
    for cut in (len(data) - 4, 20, 9):
        spec.checkpoint.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="safetensors"):
            spec.load()


@pytest.mark.parametrize(("ext", "held", "words"), [
    ("json", "pt", "the file holds a PyTorch checkpoint (torch.save), but its name ends in '.json', which is read "
                   "as a JSON state dict: rename it to end in .pt"),
    ("json", "safetensors", "the file holds a safetensors file, but its name ends in '.json'"),
    ("pt", "json", "the file holds a JSON state dict, but its name ends in '.pt', which is read as a PyTorch "
                   "checkpoint (torch.save): rename it to end in .json"),
    ("safetensors", "pt", "the file holds a PyTorch checkpoint (torch.save), but its name ends in '.safetensors'"),
    ("safetensors", "json", "rename it to end in .json"),
])
def test_content_that_does_not_match_the_extension_is_named(tmp_path, ext, held, words):
    source = _spec(_registry(tmp_path / "src", held))
    init_checkpoint(source)
    spec = _spec(_registry(tmp_path, ext))
    spec.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    spec.checkpoint.write_bytes(source.checkpoint.read_bytes())
    with pytest.raises(CheckpointError) as info:
        spec.load()
    assert words in str(info.value), str(info.value)


def test_the_cli_prints_a_malformed_checkpoint_without_a_traceback(tmp_path, capsys, monkeypatch):
    registry = _registry(tmp_path, "json")
    monkeypatch.chdir(registry.parent)
    init_checkpoint(_spec(registry, "tinydense"))
    _spec(registry).checkpoint.write_bytes(b'{"layers.0.weight": [[1.0, 2.0, 3.0], [1.0]]}')
    code = main(["validate", "--registry", str(registry), "tinylstm", "--no-latency"])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in out + err
    assert "checkpoint: models/tinylstm.json: layers.0.weight[1]: ragged nested lists" in out + err


# ---------------------------------------------------------------- the user's own tensor names

USERNET = """
[models.usernet]
description = "a GRU and a dense head"
input_shape = [1, 3]
output_shape = [1, 2]
dtype = "float32"
params = 118
latency_ms = 50.0
exports = []
checkpoint = "models/usernet.EXT"
{names}
layers = [
    {{ type = "gru", units = 4 }},
    {{ type = "dense", units = 2, activation = "tanh" }},
]
"""


class _UserNet(torch.nn.Module):
    """A user's module: the entry's layers under the user's names, defined head first."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(11)
        self.dense = torch.nn.Linear(4, 2)
        self.gru = torch.nn.GRU(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(self.gru(x.unsqueeze(1))[0][:, 0]))


def _usernet(tmp_path: Path, ext: str, names: str = "", state: dict | None = None):
    registry = write_registry(tmp_path / f"user-{ext}", text=USERNET.replace("EXT", ext).format(names=names))
    spec = load_registry(registry)["usernet"]
    state = _UserNet().state_dict() if state is None else state
    spec.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    if ext == "json":
        spec.checkpoint.write_bytes(_json_bytes(state))
    elif ext == "safetensors":
        spec.checkpoint.write_bytes(st_save(state))
    else:
        torch.save(state, spec.checkpoint)
    return registry, spec


def _same_as_user(module) -> None:
    net = _UserNet().eval()
    x = torch.randn(5, 3)
    with torch.no_grad():
        assert torch.allclose(module(x), net(x), atol=1e-6)


@pytest.mark.parametrize("ext", FORMATS)
def test_a_declared_table_maps_the_users_names(tmp_path, ext):
    _, spec = _usernet(tmp_path, ext, 'checkpoint_names = { "gru" = 0, "dense" = 1 }')
    _same_as_user(spec.load())


def test_a_wrong_table_is_reported_in_the_files_names(tmp_path, monkeypatch):
    registry, spec = _usernet(tmp_path, "json", 'checkpoint_names = { "gru" = 1, "dense" = 0 }')
    monkeypatch.chdir(registry.parent)
    with pytest.raises(CheckpointError) as info:
        spec.load()
    text = str(info.value)
    # The problems name the file's tensors (gru.weight_ih_l0), not the names the table made of them.
    # layers[0] (a GRU) read from "dense", layers[1] from "gru": the GRU's tensors are missing as dense's.
    assert "models/usernet.json: dense.weight_ih_l0: missing tensor (expected shape [12, 3])" in text
    assert "models/usernet.json: gru.weight_ih_l0: unexpected tensor" in text
    assert "layers." not in text.split("hint:")[0], text
    assert "check that table against the file's module names (dense, gru)" in info.value.hint
    assert "init --force" not in info.value.hint


def test_two_tensors_read_as_one_name_are_refused(tmp_path):
    state = {**_UserNet().state_dict(), "layers.0.weight_ih_l0": torch.zeros(12, 3)}
    _, spec = _usernet(tmp_path, "pt", 'checkpoint_names = { "gru" = 0, "dense" = 1 }', state)
    with pytest.raises(CheckpointError, match=r"two tensors of the file read as 'layers.0.weight_ih_l0' under "
                                              r"models.usernet.checkpoint_names: 'gru.weight_ih_l0' and "
                                              r"'layers.0.weight_ih_l0'"):
        spec.load()


@pytest.mark.parametrize("ext", FORMATS)
def test_match_pairs_by_shape_and_says_so(tmp_path, ext, caplog):
    registry, spec = _usernet(tmp_path, ext, 'checkpoint_names = "match"')
    with caplog.at_level(logging.INFO, logger="modelreg"):
        module = spec.load()
    _same_as_user(module)
    assert f'models.usernet.checkpoint_names = "match" paired gru.* -> layers.0.*, dense.* -> layers.1.*' in caplog.text


def test_without_a_table_the_hint_is_the_table_to_declare(tmp_path, monkeypatch):
    # safetensors sorts its tensors (dense before gru): no pairing by order, one by shape.
    registry, spec = _usernet(tmp_path, "safetensors")
    monkeypatch.chdir(registry.parent)
    with pytest.raises(CheckpointError) as info:
        spec.load()  # never loaded on a guess
    assert str(info.value).startswith(
        "models/usernet.safetensors: models.usernet.checkpoint: the tensor names are not models.usernet's, but the "
        "checkpoint's modules fit its layers one-to-one by shape: gru.* -> layers.0.*, dense.* -> layers.1.*")
    table = re.search(r"`(checkpoint_names = \{.*?\})`", info.value.hint)[1]
    assert table == 'checkpoint_names = { "gru" = 0, "dense" = 1 }'
    # The hint, pasted into the entry as written, makes the file load as the user's model.
    registry.write_text(registry.read_text().replace("layers = [", f"{table}\nlayers = [", 1))
    _same_as_user(load_registry(registry)["usernet"].load())


def test_the_order_hint_offers_the_table_too(tmp_path):
    from test_checkpoint import _bnnet, _trained

    registry, spec = _bnnet(tmp_path)
    torch.save(_trained("own"), spec.checkpoint)
    with pytest.raises(CheckpointError) as info:
        spec.load()
    table = 'checkpoint_names = { "fc1" = 0, "bn" = 1, "rnn" = 2, "head" = 3 }'
    assert f"or keep the file and declare the pairing in models.bnnet: `{table}`" in info.value.hint
    registry.write_text(registry.read_text().replace("layers = [", f"{table}\nlayers = [", 1))
    load_registry(registry)["bnnet"].load()


TWO = """
[models.two]
description = "two 4 -> 4 dense layers, then a 4 -> 2 head"
input_shape = [1, 4]
output_shape = [1, 2]
dtype = "float32"
params = 50
latency_ms = 50.0
exports = []
checkpoint = "two.EXT"
{names}
layers = [
    {{ type = "dense", units = 4, activation = "tanh" }},
    {{ type = "dense", units = 4, activation = "tanh" }},
    {{ type = "dense", units = 2, activation = "linear" }},
]
"""


def _two(tmp_path, ext, names, state):
    registry = write_registry(tmp_path / f"two-{ext}", text=TWO.replace("EXT", ext).format(names=names))
    spec = load_registry(registry)["two"]
    spec.checkpoint.write_bytes(_json_bytes(state) if ext == "json" else st_save(state))
    return registry, spec


def test_match_refuses_an_ambiguous_pairing_naming_the_candidates(tmp_path, monkeypatch):
    state = {f"{name}.{leaf}": torch.randn(shape) for name, rows in (("out", 4), ("hidden", 4), ("head", 2))
             for leaf, shape in (("weight", (rows, 4)), ("bias", (rows,)))}
    registry, spec = _two(tmp_path, "json", 'checkpoint_names = "match"', state)
    monkeypatch.chdir(registry.parent)
    with pytest.raises(CheckpointError) as info:
        spec.load()
    assert str(info.value.problems[0]) == (
        "two.json: models.two.checkpoint_names: the checkpoint's modules cannot be paired with models.two's layers "
        "by shape alone: layers[0], layers[1] could each be any of 'hidden', 'out'")
    assert 'checkpoint_names = { "hidden" = 0, "out" = 1, ... }' in info.value.hint
    # Without "match": the pairing by order is shown (issue 23), the candidates with it, and no
    # table to declare (it would pair out with layers[0] on the file's order alone).
    registry.write_text(registry.read_text().replace('checkpoint_names = "match"', ""))
    with pytest.raises(CheckpointError) as info:
        load_registry(registry)["two"].load()
    assert "fit them one-to-one in order and shape: out.* -> layers.0.*, hidden.* -> layers.1.*" in str(info.value)
    assert ("by shape alone, layers[0], layers[1] could each be any of 'hidden', 'out': the order may be wrong"
            in info.value.hint) and "checkpoint_names =" not in info.value.hint


def test_an_nn_sequential_pairs_same_shaped_layers_by_its_indices(tmp_path):
    # Twelve same-shaped layers: by name safetensors sorts "net.10." before "net.2.", the indices do not.
    layers = [torch.nn.Linear(4, 4) for _ in range(11)] + [torch.nn.Linear(4, 2)]
    torch.manual_seed(2)
    wrapper = torch.nn.Module()
    wrapper.net = torch.nn.Sequential(*layers)
    state = wrapper.state_dict()
    text = TWO.replace("two 4 -> 4 dense", "eleven 4 -> 4 dense").replace("params = 50", "params = 230").replace(
        '    {{ type = "dense", units = 4, activation = "tanh" }},\n' * 2,
        '    {{ type = "dense", units = 4, activation = "linear" }},\n' * 11)
    registry = write_registry(tmp_path / "seq", text=text.replace("EXT", "safetensors").format(
        names='checkpoint_names = "match"'))
    spec = load_registry(registry)["two"]
    spec.checkpoint.write_bytes(st_save(state))
    # The test can fail: sorted by name, net.10. would come before net.2.
    assert sorted(f"net.{i}." for i in range(12))[2] == "net.10."
    module = spec.load()
    for index in range(12):
        assert torch.equal(module.state_dict()[f"layers.{index}.weight"], state[f"net.{index}.weight"]), index


def test_match_leaves_the_entrys_own_names_alone(tmp_path):
    registry = _registry(tmp_path, "json", TINY_REGISTRY.replace(
        'checkpoint = "models/tinylstm.pt"', 'checkpoint = "models/tinylstm.pt"\ncheckpoint_names = "match"'))
    spec = _spec(registry)
    init_checkpoint(spec)
    assert spec.checkpoint_names == "match"
    spec.load()


def test_init_reports_a_kept_users_file_through_its_table(tmp_path, capsys):
    registry, spec = _usernet(tmp_path, "json", 'checkpoint_names = { "gru" = 0, "dense" = 1 }')
    assert main(["init", "--registry", str(registry)]) == 0
    assert "does not fit" not in capsys.readouterr().out
