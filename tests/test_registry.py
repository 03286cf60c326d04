"""load_registry() and Registry: the bundled models, resolution order, paths, lookups, leniency."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import attrs
import pytest

import modelreg
from modelreg import LayerSpec, ModelRegError, ModelSpec, Registry, RegistryError, UnknownModelError, load_registry
from modelreg.registry import DEFAULT_PARAM_BUDGET, REGISTRY_ENV, find_registry
from modelreg.schemas import format_key_path

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "registry.toml"

# name: (params, input_shape, output_shape, stateful, layers)
BUNDLED_MODELS = {
    "emotionrecognizer": (403264, (1, 128), (1, 64), True, (("dense", 512), ("dense", 256), ("lstm", 128), ("dense", 64))),
    "melodytransformer": (641664, (1, 64), (1, 128), True, (("dense", 256), ("lstm", 256), ("dense", 256), ("dense", 128))),
    "harmonypredictor": (74176, (1, 128), (1, 64), False, (("dense", 256), ("dense", 128), ("dense", 64))),
    "groovepredictor": (18656, (1, 64), (1, 32), False, (("dense", 128), ("dense", 64), ("dense", 32))),
    "dynamicsengine": (13520, (1, 32), (1, 16), False, (("dense", 128), ("dense", 64), ("dense", 16))),
}


def model_toml(name: str, *, units: int = 3, checkpoint: str | None = None, extra: str = "") -> str:
    """A valid one-model entry: dense 4 -> 5 (relu) -> units (softmax)."""
    params = 4 * 5 + 5 + 5 * units + units
    return textwrap.dedent(
        f"""\
        [models.{name}]
        description = "model {name}"
        input_shape = [1, 4]
        output_shape = [1, {units}]
        dtype = "float32"
        params = {params}
        latency_ms = 5.0
        exports = []
        checkpoint = "{checkpoint or f'models/{name}.pt'}"
        layers = [
            {{ type = "dense", units = 5, activation = "relu" }},
            {{ type = "dense", units = {units}, activation = "softmax" }},
        ]
        {extra}
        """
    )


def write(folder: Path, *entries: str, settings: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "registry.toml"
    path.write_text(settings + "\n".join(entries), encoding="utf-8")
    return path


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(REGISTRY_ENV, raising=False)


# --------------------------------------------------------------------------- the bundled registry


@pytest.fixture(scope="module")
def bundled() -> Registry:
    return load_registry(BUNDLED)


def test_bundled_registry_is_a_mapping_of_specs(bundled):
    assert isinstance(bundled, Mapping)
    assert list(bundled) == list(BUNDLED_MODELS)  # file order
    assert len(bundled) == 5
    assert not bundled.invalid and not bundled.problems
    assert bundled.path == BUNDLED
    assert bundled.root == ROOT
    assert bundled.param_budget == DEFAULT_PARAM_BUDGET
    assert all(isinstance(spec, ModelSpec) for spec in bundled.values())


@pytest.mark.parametrize("name", list(BUNDLED_MODELS))
def test_bundled_model(bundled, name):
    params, input_shape, output_shape, stateful, layers = BUNDLED_MODELS[name]
    spec = bundled[name]
    assert spec.name == name
    assert spec.params == params
    assert spec.computed_params == params
    assert spec.input_shape == input_shape and spec.output_shape == output_shape
    assert spec.in_features == input_shape[1] and spec.out_features == output_shape[1]
    assert spec.is_stateful is stateful
    assert tuple((layer.type, layer.units) for layer in spec.layers) == layers
    assert all(isinstance(layer, LayerSpec) for layer in spec.layers)
    assert all(layer.activation != "linear" for layer in spec.layers if layer.type == "dense")
    assert all(layer.activation == "linear" for layer in spec.layers if layer.type != "dense")
    assert spec.dtype == "float32"
    assert spec.latency_stat == "p99"
    assert isinstance(spec.latency_ms, float) and spec.latency_ms > 0
    assert spec.checkpoint == ROOT / "models" / f"{name}.pt"
    assert spec.checkpoint.is_absolute()
    assert spec.registry_file == BUNDLED
    assert spec.sha256 is not None and len(spec.sha256) == 64
    assert isinstance(spec.layers, tuple) and isinstance(spec.tags, tuple)


def test_model_spec_is_frozen(bundled):
    spec = bundled["harmonypredictor"]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        spec.params = 1  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        spec.layers[0].units = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.layers[0] = spec.layers[1]  # type: ignore[index]
    assert hash(spec.layers[0]) == hash(LayerSpec("dense", 256, "tanh"))


def test_registry_cannot_be_mutated(bundled):
    spec = bundled["harmonypredictor"]
    with pytest.raises(TypeError):
        bundled["copy"] = spec  # type: ignore[index]
    with pytest.raises(TypeError):
        del bundled["harmonypredictor"]  # type: ignore[attr-defined]
    for method in ("pop", "popitem", "update", "clear", "setdefault"):
        assert not hasattr(bundled, method)
    with pytest.raises(TypeError):
        bundled.invalid["x"] = ()  # type: ignore[index]
    assert list(bundled) == list(BUNDLED_MODELS)


def test_reloading_gives_equal_specs(bundled):
    again = load_registry(BUNDLED)
    assert dict(again) == dict(bundled)


# --------------------------------------------------------------------------- which file is used


def test_resolution_order(tmp_path, monkeypatch):
    explicit = write(tmp_path / "explicit", model_toml("fromexplicit"))
    from_env = write(tmp_path / "env", model_toml("fromenv"))
    upward = write(tmp_path / "project", model_toml("fromupward"))
    deep = tmp_path / "project" / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)

    monkeypatch.setenv(REGISTRY_ENV, str(from_env))
    assert list(load_registry(explicit)) == ["fromexplicit"]  # explicit path wins
    assert list(load_registry(str(explicit))) == ["fromexplicit"]
    assert list(load_registry()) == ["fromenv"]  # then $MODELREG_REGISTRY
    assert find_registry() == from_env

    monkeypatch.setenv(REGISTRY_ENV, "")  # an empty variable counts as unset
    assert list(load_registry()) == ["fromupward"]  # then the nearest registry.toml upward
    monkeypatch.delenv(REGISTRY_ENV)
    assert find_registry() == upward.resolve()
    assert load_registry().path == upward.resolve()


def test_upward_search_takes_the_nearest(tmp_path, monkeypatch, no_env):
    write(tmp_path / "outer", model_toml("outer"))
    inner = write(tmp_path / "outer" / "inner", model_toml("inner"))
    (tmp_path / "outer" / "inner" / "deeper").mkdir()
    monkeypatch.chdir(tmp_path / "outer" / "inner" / "deeper")
    assert list(load_registry()) == ["inner"]
    assert load_registry().path == inner.resolve()


def test_no_registry_anywhere(tmp_path, monkeypatch, no_env):
    here = tmp_path.resolve()
    if any((folder / "registry.toml").is_file() for folder in (here, *here.parents)):
        pytest.skip("a registry.toml exists above the temporary folder")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RegistryError) as info:
        load_registry()
    message = str(info.value)
    assert f"no registry.toml found in {here}" in message
    assert "--registry" in message and REGISTRY_ENV in message


def test_env_pointing_to_a_missing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(REGISTRY_ENV, str(tmp_path / "gone.toml"))
    with pytest.raises(RegistryError) as info:
        load_registry()
    assert str(info.value) == "gone.toml: registry file not found"


# --------------------------------------------------------------------------- paths inside the registry


def test_paths_resolve_relative_to_the_registry_not_cwd(tmp_path, monkeypatch, no_env):
    registry_file = write(tmp_path / "project", model_toml("tiny", checkpoint="weights/tiny.pt"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    registry = load_registry(registry_file)
    spec = registry["tiny"]
    assert spec.checkpoint == tmp_path / "project" / "weights" / "tiny.pt"
    assert spec.registry_file == registry_file
    assert spec.registry_dir == tmp_path / "project"
    assert registry.root == tmp_path / "project"


def test_relative_registry_path_gives_absolute_spec_paths(tmp_path, monkeypatch, no_env):
    write(tmp_path / "project", model_toml("tiny"))
    monkeypatch.chdir(tmp_path)
    spec = load_registry("project/registry.toml")["tiny"]
    assert spec.checkpoint.is_absolute() and spec.registry_file.is_absolute()
    monkeypatch.chdir(tmp_path / "project")  # the spec does not depend on the cwd any more
    assert spec.checkpoint == tmp_path / "project" / "models" / "tiny.pt"


def test_containment_is_checked_against_the_registry_folder_not_cwd(tmp_path, monkeypatch, no_env):
    # "../elsewhere/x.pt" would be inside the cwd (tmp_path) but leaves the registry's folder.
    registry_file = write(tmp_path / "project", model_toml("tiny", checkpoint="../elsewhere/tiny.pt"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RegistryError) as info:
        load_registry(registry_file)
    (problem,) = info.value.problems
    assert problem.key == "models.tiny.checkpoint"
    assert problem.file == "project/registry.toml"  # shown relative to the cwd when inside it


def test_messages_show_absolute_paths_outside_the_cwd(tmp_path, monkeypatch, no_env):
    registry_file = write(tmp_path / "project", model_toml("tiny").replace("params = 43", "params = 42"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(RegistryError) as info:
        load_registry(registry_file)
    assert info.value.file == str(registry_file)


# --------------------------------------------------------------------------- lookups


def test_unknown_model_error(bundled):
    with pytest.raises(UnknownModelError) as info:
        bundled["emotionrecogniser"]
    error = info.value
    assert isinstance(error, KeyError) and isinstance(error, LookupError) and isinstance(error, ModelRegError)
    message = str(error)
    assert "no model named 'emotionrecogniser'; did you mean 'emotionrecognizer'?" in message
    assert message.startswith(error.file + ": ")
    assert "one of emotionrecognizer, melodytransformer, harmonypredictor, groovepredictor, dynamicsengine" in message
    assert not message.startswith('"')  # not KeyError's repr()


def test_unknown_model_without_a_close_name(bundled):
    with pytest.raises(KeyError) as info:
        bundled["zzz"]
    assert "did you mean" not in str(info.value)
    assert "zzz" not in bundled
    assert bundled.get("zzz") is None
    assert bundled.get("zzz", bundled["groovepredictor"]) is bundled["groovepredictor"]


# --------------------------------------------------------------------------- strict and lenient


def test_lenient_loading_keeps_valid_models(tmp_path, no_env):
    broken = model_toml("broken").replace("params = 43", "params = 42")
    typo = model_toml("typo").replace("latency_ms =", "latency_msec =")
    path = write(tmp_path, model_toml("first"), broken, typo, model_toml("last"))

    registry = load_registry(path, strict=False)
    assert list(registry) == ["first", "last"]
    assert list(registry.invalid) == ["broken", "typo"]
    assert registry.names == ("first", "broken", "typo", "last")  # file order, valid or not
    assert "broken" not in registry
    (mismatch,) = registry.invalid["broken"]
    assert (mismatch.model, mismatch.key) == ("broken", "models.broken.params")
    (unknown,) = registry.invalid["typo"]  # one problem for one typo, not also "missing latency_ms"
    assert unknown.key == "models.typo.latency_msec"
    assert "did you mean 'latency_ms'?" in unknown.reason
    assert registry.problems == (mismatch, unknown)

    # Asking for a broken model by name says what is wrong with it.
    with pytest.raises(RegistryError) as info:
        registry["broken"]
    assert info.value.problems == (mismatch,)

    # Strict loading reports every problem of every entry at once.
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    assert info.value.problems == (mismatch, unknown)


def test_file_level_problems_raise_even_when_lenient(tmp_path, no_env):
    path = write(tmp_path, model_toml("fine"), settings="[setings]\nparam_budget = 5\n\n")
    with pytest.raises(RegistryError) as info:
        load_registry(path, strict=False)
    (problem,) = info.value.problems
    assert problem.key == "setings" and problem.model is None
    assert "did you mean 'settings'?" in problem.reason


def test_an_invalid_model_name_is_a_problem_of_that_model(tmp_path, no_env):
    spaced = model_toml("withspace").replace("[models.withspace]", '[models."with space"]')
    path = write(tmp_path, model_toml("fine"), model_toml("Bad"), spaced)
    registry = load_registry(path, strict=False)
    assert list(registry) == ["fine"]
    assert list(registry.invalid) == ["Bad", "with space"]
    assert [p.key for p in registry.problems] == ["models.Bad", 'models."with space"']


def test_empty_models_table_is_an_empty_registry(tmp_path, no_env):
    registry = load_registry(write(tmp_path, "[models]\n"))
    assert len(registry) == 0 and not registry.invalid


# --------------------------------------------------------------------------- the parameter budget


def test_param_budget_argument(tmp_path, no_env):
    path = write(tmp_path, model_toml("small"), model_toml("wide", units=2000))  # 43 and 12,025 parameters
    assert set(load_registry(path)) == {"small", "wide"}

    registry = load_registry(path, strict=False, param_budget=1000)
    assert list(registry) == ["small"]
    assert registry.param_budget == 1000
    (problem,) = registry.invalid["wide"]
    assert problem.key == "models.wide.layers"
    assert problem.expected == "at most 1,000 parameters"
    assert problem.found == "12,025 parameters, 12,000 of them in layers[1]"

    with pytest.raises(RegistryError):
        load_registry(path, param_budget=1000)


def test_param_budget_setting_and_argument_precedence(tmp_path, no_env):
    path = write(tmp_path, model_toml("small"), model_toml("wide", units=2000),
                 settings="[settings]\nparam_budget = 1000\n\n")
    registry = load_registry(path, strict=False)
    assert registry.param_budget == 1000
    assert list(registry) == ["small"] and list(registry.invalid) == ["wide"]

    registry = load_registry(path, param_budget=20_000)  # the argument beats the file
    assert registry.param_budget == 20_000
    assert set(registry) == {"small", "wide"}


def test_param_budget_allows_more_than_the_default(tmp_path, no_env):
    # 10,000 x 10,000 dense = 100,010,000 parameters: over the default, within a raised budget.
    big = model_toml("big", units=3).replace(
        '{ type = "dense", units = 5, activation = "relu" },',
        '{ type = "dense", units = 10000, activation = "relu" },\n'
        '    { type = "dense", units = 10000, activation = "relu" },\n'
        '    { type = "dense", units = 5, activation = "relu" },',
    )
    computed = 4 * 10000 + 10000 + 10000 * 10000 + 10000 + 10000 * 5 + 5 + 5 * 3 + 3
    big = big.replace("params = 43", f"params = {computed}")
    path = write(tmp_path, big)
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    assert "exceeds the parameter budget" in str(info.value)
    assert load_registry(path, param_budget=200_000_000)["big"].params == computed
    path.write_text("[settings]\nparam_budget = 200_000_000\n\n" + big)
    assert load_registry(path)["big"].params == computed


# --------------------------------------------------------------------------- import cost


def test_import_and_load_do_not_import_torch():
    script = (
        "import sys, modelreg\n"
        f"registry = modelreg.load_registry({str(BUNDLED)!r})\n"
        "assert len(registry) == 5\n"
        "registry['harmonypredictor'].computed_params\n"
        "try:\n"
        "    registry['nope']\n"
        "except modelreg.UnknownModelError:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != REGISTRY_ENV}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


# --------------------------------------------------------------------------- key paths in messages


@pytest.mark.parametrize(
    ("parts", "text"),
    [
        (["models", "x", "layers", 1, "units"], "models.x.layers[1].units"),
        (["models", "my model"], 'models."my model"'),
        (["models", "a.b", "dtype"], 'models."a.b".dtype'),
        (["models", ""], 'models.""'),
        (["setings"], "setings"),
        ([], ""),
    ],
)
def test_key_paths_quote_keys_that_toml_would_quote(parts, text):
    assert format_key_path(parts) == text


def test_public_names():
    assert modelreg.load_registry is load_registry
    assert issubclass(RegistryError, ValueError) and issubclass(UnknownModelError, KeyError)


def test_bundled_schemas_are_valid_against_their_metaschema():
    # modelreg does not check its own schemas at run time (start-up cost); this test does.
    import jsonschema

    from modelreg.schemas import load_schema

    for name in ("registry", "validation_results", "rtneural"):
        schema = load_schema(name)
        jsonschema.validators.validator_for(schema).check_schema(schema)
