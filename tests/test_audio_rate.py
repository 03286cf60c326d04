"""Audio-rate models (issue 22, section 5): ``sample_rate`` and ``block_size`` in an entry make a model
timed a whole block at a time, with the real-time factor (block duration / block time).

The broken entries (one key without the other, bad values, a target looser than the block) are in
tests/bad_registries/audio_rate_*.toml; here: what a valid entry becomes, the figures and their
arithmetic (checked against a fake timer), and where users read them.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

import modelreg
from modelreg import ModelSpec, load_registry

ROOT = Path(__file__).resolve().parents[1]

#: A per-sample model: one sample in, one out (dense 1 -> 5 -> 1, tanh then linear).
AUDIO_ENTRY = """\
[models.{name}]
description = "a per-sample waveshaper"
input_shape = [1, 1]
output_shape = [1, 1]
dtype = "float32"
params = 16
{keys}
exports = {exports}
checkpoint = "models/{name}.pt"
layers = [
    {{ type = "dense", units = 5, activation = "tanh" }},
    {{ type = "dense", units = 1, activation = "linear" }},
]
"""


def audio_entry(name: str = "shaper", keys: str = "sample_rate = 48000\nblock_size = 64", exports: str = "[]") -> str:
    return AUDIO_ENTRY.format(name=name, keys=keys, exports=exports)


def write(folder: Path, *entries: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "registry.toml"
    path.write_text("\n".join(entries), encoding="utf-8")
    return path


# ---------------------------------------------------------------- the registry keys


def test_an_audio_rate_entry_needs_no_latency_ms_its_target_is_the_block(tmp_path):
    spec = load_registry(write(tmp_path, audio_entry()))["shaper"]
    assert spec.is_audio_rate
    assert (spec.sample_rate, spec.block_size) == (48000.0, 64)
    assert spec.block_ms == pytest.approx(64 / 48000 * 1000)
    assert spec.latency_ms == spec.block_ms  # derived: one block's duration
    assert spec.target_is_block


def test_a_stricter_latency_ms_is_the_target_of_an_audio_rate_entry(tmp_path):
    spec = load_registry(write(tmp_path, audio_entry(keys="latency_ms = 0.5\nsample_rate = 44100\nblock_size = 128")))["shaper"]
    assert spec.latency_ms == 0.5
    assert spec.block_ms == pytest.approx(128 / 44.1)
    assert not spec.target_is_block


def test_latency_ms_equal_to_the_block_is_accepted(tmp_path):
    # 64 samples at 64 kHz last exactly 1 ms: the bound is inclusive.
    spec = load_registry(write(tmp_path, audio_entry(keys="latency_ms = 1.0\nsample_rate = 64000\nblock_size = 64")))["shaper"]
    assert spec.latency_ms == 1.0 and spec.target_is_block


def test_other_entries_are_not_audio_rate(tmp_path):
    spec = load_registry(write(tmp_path, audio_entry(keys="latency_ms = 2.0")))["shaper"]
    assert not spec.is_audio_rate
    assert spec.sample_rate is None and spec.block_size is None and spec.block_ms is None
    assert not spec.target_is_block


def test_a_model_spec_made_in_code_defaults_to_no_audio_rate():
    from modelreg.spec import LayerSpec

    spec = ModelSpec(name="m", description="", input_shape=(1, 1), output_shape=(1, 1), dtype="float32", params=2,
                     latency_ms=1.0, layers=(LayerSpec("dense", 1, "linear"),), checkpoint=Path("m.pt"),
                     registry_file=Path("registry.toml"))
    assert not spec.is_audio_rate and spec.block_ms is None


def test_the_audio_keys_do_not_make_artifacts_stale(tmp_path):
    """sample_rate and block_size say how the host calls the model, not what it computes."""
    from modelreg.exporting import artifact_entry_sha256

    plain = load_registry(write(tmp_path / "a", audio_entry(keys="latency_ms = 1.0")))["shaper"]
    audio = load_registry(write(tmp_path / "b", audio_entry()))["shaper"]
    assert artifact_entry_sha256(plain) == artifact_entry_sha256(audio)


@pytest.mark.parametrize(("rate", "block", "text"), [
    (48000, 64, "48 kHz, 64-sample blocks"),
    (44100, 32, "44.1 kHz, 32-sample blocks"),
    (22050, 1, "22.05 kHz, 1-sample blocks"),
    (500, 8, "500 Hz, 8-sample blocks"),
])
def test_audio_rate_text(rate, block, text):
    from modelreg.spec import audio_rate_text

    assert audio_rate_text(rate, block) == text
