"""Fuzzing the loaders: random and mutated registries, RTNeural files and checkpoints.

For every input the only outcomes allowed are success or a ``ModelRegError``
whose message names the file; never another exception, a hang or a crash.
(A crash of the interpreter would kill the test run; a hang is stopped by the
pytest-timeout limit of each test.) Every target runs at least 200 examples,
derandomized so that CI sees the same inputs every time.

Targets:
* registry text mutated byte by byte (TOML syntax, encodings, truncation);
* registry documents with random values put at random key paths (types,
  sizes, shapes, names), also through ``modelreg list``;
* RTNeural documents with random values put at random paths, loaded and run;
* RTNeural JSON text mutated byte by byte;
* checkpoint bytes mutated (bit flips, cuts, insertions inside torch's zip).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelreg
from modelreg.checkpoint import init_checkpoint
from modelreg.cli import main
from modelreg.rtneural.exporter import RTNeuralExporter
from modelreg.rtneural.format import dumps_rtneural
from modelreg.rtneural.runtime import load_rtneural

from conftest import TINY_REGISTRY

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# 200 examples per target in CI, always the same ones. A longer, random hunt:
# MODELREG_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py. A generous per-example
# deadline flags pathological slowness without making a noisy machine fail.
EXAMPLES = int(os.environ.get("MODELREG_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=10),
    derandomize=EXAMPLES <= 200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

BASE_REGISTRY = TINY_REGISTRY.replace("exports = []", 'exports = ["rtneural"]')


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """One folder for all examples of a module (hypothesis reruns a test body many times)."""
    folder = Path(tempfile.mkdtemp(prefix="modelreg-fuzz-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- mutations

@st.composite
def byte_mutations(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` after 1 to 8 random edits: flip, replace, delete, insert, duplicate or cut."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "replace", "delete", "insert", "duplicate", "truncate"]))
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        if kind == "flip" and out:
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "replace" and out:
            out[at] = draw(st.integers(0, 255))
        elif kind == "delete" and out:
            del out[at:at + draw(st.integers(1, 64))]
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=16) | st.sampled_from(
                [b"\x00", b"\xff\xfe", b"\"", b"[", b"]", b"{", b"}", b"=", b"\n", b"1e999", b"-0", b"NaN", b"\\u0000"]))
        elif kind == "duplicate" and out:
            out[at:at] = out[at:at + draw(st.integers(1, 128))]
        elif kind == "truncate":
            del out[at:]
    return bytes(out)


def toml_values() -> st.SearchStrategy[Any]:
    """Any value TOML can hold, biased towards those that break size and shape checks."""
    scalars = st.one_of(
        st.integers(-(2**63), 2**63 - 1),
        st.sampled_from([0, -1, 1, 10**9, 10**12, 2**31, 2**63 - 1, -(2**63)]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0.5, -0.0, 1e-300, 1e300, math.inf, math.nan]),
        st.booleans(),
        st.text(max_size=20),
        st.sampled_from(["dense", "lstm", "gru", "tanh", "softmax", "rtneural", "onnx", "../x.pt", "/etc/passwd",
                         "models/tinydense.pt", "p99", "float32", "", "a" * 300]),
    )
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
        max_leaves=12,
    )


def key_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in a parsed document (dict keys and list indices)."""
    paths = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            paths.extend(key_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            paths.extend(key_paths(value, (*prefix, index)))
    return paths


def summarized_paths(node: Any) -> list[tuple[Any, ...]]:
    """Key paths, but only the first few numbers of each weight array (a kernel has thousands)."""
    return [path for path in key_paths(node) if not any(isinstance(p, int) and p > 2 for p in path[3:])]


@st.composite
def document_mutations(draw: st.DrawFn, base: Any, values: st.SearchStrategy[Any],
                       paths: Any = key_paths) -> Any:
    """``base`` after 1 to 4 structural edits at random paths: set a value, delete, add a key, duplicate."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        candidates = paths(doc)
        path = draw(st.sampled_from(candidates))
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        kind = draw(st.sampled_from(["set", "set", "delete", "add", "duplicate"]))
        if not path:  # the root itself
            if kind == "set":
                doc = draw(values)
                if not isinstance(doc, dict):
                    return doc
            continue
        last = path[-1]
        if kind == "set":
            parent[last] = draw(values)
        elif kind == "delete":
            del parent[last]
        elif kind == "add":
            target = parent[last]
            if isinstance(target, dict):
                target[draw(st.text(max_size=12))] = draw(values)
            elif isinstance(target, list):
                target.insert(draw(st.integers(0, len(target))), draw(values))
        elif kind == "duplicate" and isinstance(parent, list):
            parent.insert(last, copy.deepcopy(parent[last]))
    return doc


# --------------------------------------------------------------------------- outcomes

def assert_clear_error(exc: modelreg.ModelRegError, file_name: str) -> None:
    message = str(exc)
    assert message.strip(), f"{type(exc).__name__} without a message"
    assert file_name in message, f"the message does not name {file_name!r}: {message}"
    assert "Traceback" not in message


def load_or_clear_error(path: Path) -> modelreg.Registry | None:
    """The fuzzed registry loads, or a ModelRegError names the file; any other exception fails the test."""
    try:
        registry = modelreg.load_registry(path, known_exporters=lambda: ("rtneural", "onnx"))
    except modelreg.ModelRegError as exc:
        assert_clear_error(exc, path.name)
        return None
    for name, spec in registry.items():  # a loaded registry is fully usable
        assert spec.name == name and spec.input_shape and spec.layers
    for problems in registry.invalid.values():
        for problem in problems:
            assert str(problem).strip()
    return registry


def run_cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


# --------------------------------------------------------------------------- registries

@FUZZ
@given(data=byte_mutations(BASE_REGISTRY.encode()))
def test_fuzz_registry_bytes(workdir, data):
    path = workdir / "registry.toml"
    path.write_bytes(data)
    load_or_clear_error(path)


@FUZZ
@given(doc=document_mutations(tomllib.loads(BASE_REGISTRY), toml_values()))
def test_fuzz_registry_documents(workdir, doc):
    path = workdir / "registry.toml"
    if not isinstance(doc, dict):  # the root replaced: TOML's root is always a table
        doc = {"models": doc}
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    registry = load_or_clear_error(path)
    code, err = run_cli(["list", "--registry", str(path)])
    assert code == (0 if registry is not None else 2), err
    assert "Traceback" not in err
    if code == 2:
        assert err.startswith("modelreg: error: ") and "registry.toml" in err


# --------------------------------------------------------------------------- RTNeural files

@pytest.fixture(scope="module")
def rtneural_bases(workdir) -> dict[str, Any]:
    """The tiny registry's three models (dense, LSTM, GRU) as RTNeural documents, from seeded weights."""
    path = workdir / "rtneural-base" / "registry.toml"
    path.parent.mkdir()
    path.write_text(BASE_REGISTRY)
    documents = {}
    for spec in modelreg.load_registry(path).values():
        init_checkpoint(spec, seed=0)
        target = path.parent / f"{spec.name}.json"
        RTNeuralExporter().export(spec, spec.load(), target)
        documents[spec.name] = json.loads(target.read_text())
    return documents


def weight_values() -> st.SearchStrategy[Any]:
    """JSON values, biased towards what breaks weights and shapes."""
    numbers = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70),
        st.sampled_from([0, 1, -1, 3, 4, 5, 10**9, 1e39, -1e39, math.nan, math.inf]),
    )
    scalars = st.one_of(numbers, st.none(), st.booleans(), st.text(max_size=8),
                        st.sampled_from(["dense", "lstm", "gru", "time-distributed-dense", "activation", "conv1d",
                                         "tanh", "relu", "sigmoid", "softmax", "elu", "", "Tanh", "linear"]))
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=3),
        max_leaves=16,
    )


def load_and_run_or_clear_error(source: Any, file_name: str) -> None:
    try:
        model = load_rtneural(source, file=file_name)
    except modelreg.ModelRegError as exc:
        assert_clear_error(exc, file_name)
        return
    if model.in_size > 4096:  # valid, but a frame would be large; loading was the point
        return
    with np.errstate(all="ignore"):  # fuzzed weights may overflow: finite output is not promised
        for _ in range(3):
            out = model.step(np.linspace(-1.0, 1.0, model.in_size, dtype=np.float32))
            assert out.shape == (model.out_size,)
        model.reset()


@FUZZ
@given(data=st.data())
def test_fuzz_rtneural_documents(rtneural_bases, workdir, data):
    name = data.draw(st.sampled_from(sorted(rtneural_bases)))
    doc = data.draw(document_mutations(rtneural_bases[name], weight_values(), paths=summarized_paths))
    load_and_run_or_clear_error(doc, f"{name}.json")  # the parsed document
    path = workdir / f"{name}.json"
    path.write_text(json.dumps(doc), encoding="utf-8")  # and the same as a file (NaN written as JSON5 NaN)
    load_and_run_or_clear_error(path, path.name)


@FUZZ
@given(data=st.data())
def test_fuzz_rtneural_bytes(rtneural_bases, workdir, data):
    name = data.draw(st.sampled_from(sorted(rtneural_bases)))
    path = workdir / f"{name}.json"
    path.write_bytes(data.draw(byte_mutations(dumps_rtneural(rtneural_bases[name]))))
    load_and_run_or_clear_error(path, path.name)
    code, err = run_cli(["check", str(path)])
    # 1: read and found broken (the file exists and is readable, so never 2).
    assert code in (0, 1) and "Traceback" not in err


# --------------------------------------------------------------------------- checkpoints

@pytest.fixture(scope="module")
def checkpoint_project(workdir) -> tuple[Path, dict[str, bytes]]:
    path = workdir / "checkpoints" / "registry.toml"
    path.parent.mkdir()
    path.write_text(TINY_REGISTRY)
    originals = {}
    for spec in modelreg.load_registry(path).values():
        init_checkpoint(spec, seed=0)
        originals[spec.name] = spec.checkpoint.read_bytes()
    return path, originals


@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint_bytes(checkpoint_project, data):
    path, originals = checkpoint_project
    registry = modelreg.load_registry(path)
    name = data.draw(st.sampled_from(sorted(originals)))
    spec = registry[name]
    spec.checkpoint.write_bytes(data.draw(byte_mutations(originals[name])))
    try:
        module = spec.load()
    except modelreg.ModelRegError as exc:
        assert_clear_error(exc, spec.checkpoint.name)
        return
    import torch

    # Mutated bytes that still load give the declared architecture (values may differ).
    with torch.inference_mode():
        out = module(torch.zeros(spec.input_shape))
    assert tuple(out.shape) == tuple(spec.output_shape)


@pytest.fixture(scope="module")
def checkpoint_formats_project(workdir) -> tuple[Path, dict[str, bytes]]:
    """The tiny registry's LSTM with a JSON and a safetensors checkpoint (issue 19, section 3)."""
    path = workdir / "checkpoint-formats" / "registry.toml"
    path.parent.mkdir()
    path.write_text(TINY_REGISTRY + TINY_REGISTRY.replace("[models.tiny", "[models.st_tiny").replace(
        '.pt"', '.safetensors"').replace("models/tiny", "models/st_tiny"))
    path.write_text(path.read_text().replace('models/tinylstm.pt"', 'models/tinylstm.json"'))
    originals = {}
    for name in ("tinylstm", "st_tinylstm"):
        spec = modelreg.load_registry(path)[name]
        init_checkpoint(spec, seed=0)
        originals[name] = spec.checkpoint.read_bytes()
    return path, originals


@FUZZ
@given(data=st.data())
def test_fuzz_json_and_safetensors_checkpoint_bytes(checkpoint_formats_project, data):
    path, originals = checkpoint_formats_project
    name = data.draw(st.sampled_from(sorted(originals)))
    spec = modelreg.load_registry(path)[name]
    spec.checkpoint.write_bytes(data.draw(byte_mutations(originals[name])))
    try:
        spec.load()
    except modelreg.ModelRegError as exc:
        assert_clear_error(exc, spec.checkpoint.name)

