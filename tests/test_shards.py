"""Shards (issue 21, section 3): `validate --shard I/N` validates a deterministic share of the
registry and writes a partial results file; `modelreg merge-results` combines the shards' files
into the one results file, refusing overlapping or missing shards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_cli, write_registry
from modelreg.shards import Shard, parse_shard, plan_shards

NO_LATENCY = ("--no-latency",)


# ---------------------------------------------------------------- a 30-model registry


def _dense(name: str, units: int) -> str:
    params = 4 * units + units + units * 2 + 2
    return f"""
[models.{name}]
description = "dense {units}"
input_shape = [1, 4]
output_shape = [1, 2]
dtype = "float32"
params = {params}
latency_ms = 50.0
exports = []
checkpoint = "models/{name}.pt"
layers = [
    {{ type = "dense", units = {units}, activation = "tanh" }},
    {{ type = "dense", units = 2, activation = "sigmoid" }},
]
"""


def _recurrent(name: str, kind: str, units: int) -> str:
    gates = 4 if kind == "lstm" else 3
    params = gates * units * (3 + units) + 2 * gates * units + units * 2 + 2
    return f"""
[models.{name}]
description = "{kind} {units}"
input_shape = [1, 3]
output_shape = [1, 2]
dtype = "float32"
params = {params}
latency_ms = 50.0
exports = []
checkpoint = "models/{name}.pt"
layers = [
    {{ type = "{kind}", units = {units} }},
    {{ type = "dense", units = 2, activation = "sigmoid" }},
]
"""


def _thirty() -> str:
    entries = []
    for i in range(30):
        units = 2 + i % 5
        kind = ("dense", "lstm", "gru")[i % 3]
        name = f"m{i:02d}{kind}"
        entries.append(_dense(name, units) if kind == "dense" else _recurrent(name, kind, units))
    return "".join(entries)


INVALID = "m07lstm"  # its params are declared wrong: an invalid entry (exit 2), still in a shard
CORRUPT = "m11gru"  # its checkpoint is junk: a failed model (exit 1)


@pytest.fixture
def thirty(tmp_path: Path) -> Path:
    """A 30-model registry (dense, lstm, gru; no exports), one invalid entry and one corrupt checkpoint."""
    import modelreg
    from modelreg.checkpoint import init_checkpoint

    text = _thirty()
    path = write_registry(tmp_path / "project", text=text)
    for spec in modelreg.load_registry(path).values():
        init_checkpoint(spec, seed=0)
    broken = text.replace(f'description = "lstm {2 + 7 % 5}"', f'description = "lstm {2 + 7 % 5}"\nsha256 = "x"', 1)
    assert broken != text
    path.write_text(broken)
    (tmp_path / "project" / "models" / f"{CORRUPT}.pt").write_bytes(b"not a checkpoint")
    return path


def _without_timings(document: dict) -> dict:
    """A results document with its timings left out: each model's seconds, the run's time."""
    copy = json.loads(json.dumps(document))
    copy["environment"].pop("time")
    for model in copy["models"].values():
        model.pop("seconds")
    return copy


def test_three_shards_merged_equal_a_full_run_in_every_field_but_timings(thirty, capsys):
    project = thirty.parent
    models = project / "models"
    codes, held = [], []
    for index in (1, 2, 3):
        code, out, err = run_cli(["validate", "--registry", str(thirty), "--shard", f"{index}/3", *NO_LATENCY], capsys)
        assert "Traceback" not in out + err
        codes.append(code)
        assert f"shard {index}/3: 10 models of 30, balanced by model count (no " in out
        partial = json.loads((models / f"validation_results.shard-{index}-of-3.json").read_text())
        held.append(list(partial["models"]))
        assert partial["shard"]["index"] == index and partial["shard"]["count"] == 3
    assert not (models / "validation_results.json").exists()  # a shard never writes the full file
    assert sorted(sum(held, [])) == sorted(json.loads(thirty.with_name("models").joinpath(
        "validation_results.shard-1-of-3.json").read_text())["shard"]["plan"][0] + held[1] + held[2])
    assert len(set(sum(held, []))) == 30  # each model in exactly one shard
    # The shard holding the invalid entry exits 2, the one with the corrupt checkpoint 1 (or 2 if both).
    which = {name: i for i, names in enumerate(held) for name in names}
    assert codes[which[INVALID]] == 2
    assert codes[which[CORRUPT]] in (1, 2)

    merged = project / "merged.json"
    code, out, err = run_cli(["merge-results", "--registry", str(thirty), "-o", str(merged),
                              *(str(models / f"validation_results.shard-{i}-of-3.json") for i in (3, 1, 2))], capsys)
    assert code == 2, err  # the invalid entry: as a full run
    assert "merged 3 shards (30 models: 28 passed, 2 failed)" in out
    assert f"FAIL {CORRUPT}: " in out and f"FAIL {INVALID}: " in out
    assert "Traceback" not in out + err

    code, out, err = run_cli(["validate", "--registry", str(thirty), *NO_LATENCY], capsys)
    assert code == 2
    full = json.loads((models / "validation_results.json").read_text())
    combined = json.loads(merged.read_text())
    assert list(combined["models"]) == list(full["models"])  # registry order
    assert "shard" not in combined
    assert _without_timings(combined) == _without_timings(full)
    # The same comparison must be able to fail: a timing-free field that differs is seen.
    combined["models"][CORRUPT]["checks"][0]["message"] += "!"
    assert _without_timings(combined) != _without_timings(full)


# ---------------------------------------------------------------- the plan


def test_without_durations_the_models_are_dealt_round_robin_in_registry_order():
    names = [f"m{i}" for i in range(7)]
    groups, by = plan_shards(names, 3)
    assert by == "count"
    assert groups == [["m0", "m3", "m6"], ["m1", "m4"], ["m2", "m5"]]


def test_with_durations_the_slowest_go_first_to_the_least_loaded_shard():
    durations = {"a": 5.0, "b": 4.0, "c": 3.0, "d": 3.0, "e": 2.0, "f": 1.0}
    groups, by = plan_shards(list(durations), 2, durations)
    assert by == "durations"
    # a->1 (5), b->2 (4), c->2 (7), d->1 (8), e->2 (9), f->1 (9): each shard in registry order
    assert groups == [["a", "d", "f"], ["b", "c", "e"]]
    # By count it would have been a, c, e / b, d, f: 10 s against 8 s.
    assert plan_shards(list(durations), 2)[0] == [["a", "c", "e"], ["b", "d", "f"]]


def test_the_plan_does_not_depend_on_the_order_of_the_results_file():
    names = [f"m{i}" for i in range(40)]
    durations = {name: (i * 7919 % 97) / 10 for i, name in enumerate(names)}
    reversed_file = dict(reversed(list(durations.items())))
    assert plan_shards(names, 4, durations) == plan_shards(names, 4, reversed_file)
    # Durations are counted in whole microseconds: a difference below one does not move a model.
    nudged = {name: seconds + 1e-8 for name, seconds in durations.items()}
    assert plan_shards(names, 4, nudged) == plan_shards(names, 4, durations)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_every_model_is_in_exactly_one_shard(count):
    names = [f"m{i}" for i in range(13)]
    durations = {name: (i * 31 % 11) / 3 for i, name in enumerate(names) if i % 4}  # some unknown (new) models
    groups, _ = plan_shards(names, count, durations)
    assert len(groups) == count
    assert sorted(sum(groups, [])) == sorted(names)
    for group in groups:
        assert group == [n for n in names if n in group]  # registry order inside a shard


def test_a_model_the_results_file_does_not_know_weighs_the_median():
    durations = {"a": 1.0, "b": 2.0, "c": 100.0}
    # "new" weighs 2 s (the median), not 34 s (the mean): it joins the light shard.
    groups, _ = plan_shards(["a", "b", "c", "new"], 2, durations)
    assert groups == [["c"], ["a", "b", "new"]]


@pytest.mark.parametrize(("text", "reason"), [
    ("x", "not a shard"),
    ("1", "not a shard"),
    ("1/2/3", "not a shard"),
    ("-1/3", "not a shard"),
    ("", "not a shard"),
    ("4/3", "there is no shard 4 of 3"),
    ("0/3", "there is no shard 0 of 3"),
    ("1/0", "there must be at least one shard"),
])
def test_a_bad_shard_is_one_message_naming_the_form(text, reason, tiny_registry, capsys):
    from modelreg.errors import UsageError

    with pytest.raises(UsageError, match=reason):
        parse_shard(text)
    code, out, err = run_cli(["validate", "--registry", str(tiny_registry), f"--shard={text}"], capsys)
    assert code == 2 and "Traceback" not in err
    assert (f"modelreg validate: error: argument --shard: {reason} (expected I/N: this machine's shard I of N "
            f"shards, whole numbers with 1 <= I <= N (such as 2/3), found {text!r})") in err
    assert not (tiny_registry.parent / "models" / "validation_results.json").exists()


def test_parse_shard_reads_spaces_and_keeps_a_shard():
    assert parse_shard(" 2 / 3 ") == Shard(2, 3)
    assert parse_shard(Shard(1, 1)) == Shard(1, 1)
    assert str(Shard(2, 3)) == "2/3"


@pytest.mark.parametrize(("argv", "message"), [
    (["validate", "tinygru", "--shard", "1/2"],
     "--shard splits the whole registry: give model names or --shard, not both (expected no model names with --shard, "
     "found 'tinygru')"),
    (["validate", "--durations", "x.json"], "--durations balances shards: it needs --shard I/N"),
    (["validate", "--shard", "1/2", "--durations", "nothere.json"],
     "nothere.json: durations file not found (expected a validation results file"),
    (["merge-results", "nothere.json"], "nothere.json: shard results file not found"),
    (["merge-results", "-o", "out.txt", "a.json"], "argument -o/--output: expected a file name ending in .json, found 'out.txt'"),
])
def test_usage_errors_are_one_line_and_exit_2(argv, message, tiny_registry, capsys, monkeypatch):
    monkeypatch.chdir(tiny_registry.parent)
    code, out, err = run_cli([*argv, "--registry", str(tiny_registry)], capsys)
    assert code == 2, out + err
    assert message in err
    assert "Traceback" not in out + err


def test_the_durations_of_the_last_results_file_balance_the_shards(tiny_registry, capsys):
    from modelreg import load_registry
    from modelreg.shards import plan_shard

    models = tiny_registry.parent / "models"
    registry = load_registry(tiny_registry)
    assert plan_shard(registry, "1/2").balanced_by == "count"
    document = {"format": 1, "ok": True, "registry": str(tiny_registry), "problems": [], "warnings": [],
                "environment": {"python": "3", "torch": "2", "platform": "p", "modelreg": "0",
                                "time": "2026-01-01T00:00:00+00:00"},
                "models": {name: {"ok": True, "seconds": seconds, "checks": []}
                           for name, seconds in (("tinydense", 0.1), ("tinylstm", 0.2), ("tinygru", 5.0))}}
    (models / "validation_results.json").write_text(json.dumps(document))
    plan = plan_shard(registry, "1/2")
    assert plan.balanced_by == "durations" and plan.models == ["tinygru"]
    assert plan_shard(registry, "2/2").models == ["tinydense", "tinylstm"]
    code, out, _ = run_cli(["validate", "--registry", str(tiny_registry), "--shard", "2/2", *NO_LATENCY], capsys)
    assert code == 0
    assert "shard 2/2: 2 models of 3, balanced by the durations in " in out
    # --durations names another file (a CI artifact of the last merged run).
    elsewhere = tiny_registry.parent / "last.json"
    document["models"]["tinygru"]["seconds"] = 0.0
    elsewhere.write_text(json.dumps(document))
    assert plan_shard(registry, "1/2", elsewhere).models == ["tinylstm"]


def test_an_unreadable_results_file_balances_by_count_and_says_so(tiny_registry, capsys):
    (tiny_registry.parent / "models" / "validation_results.json").write_text("{not json")
    code, out, err = run_cli(["validate", "--registry", str(tiny_registry), "--shard", "1/2", *NO_LATENCY], capsys)
    assert code == 0
    assert "shard 1/2: 2 models of 3, balanced by model count" in out
    assert "modelreg: warning: " in err and "not valid JSON" in err and "balanced by model count instead" in err


def test_a_shard_never_replaces_the_full_results_file_or_report(tiny_registry, capsys):
    models = tiny_registry.parent / "models"
    code, _, _ = run_cli(["validate", "--registry", str(tiny_registry), *NO_LATENCY, "--report"], capsys)
    assert code == 0
    full, page = models / "validation_results.json", models / "validation_report.html"
    before = (full.read_bytes(), page.read_bytes())
    code, out, _ = run_cli(["validate", "--registry", str(tiny_registry), "--shard", "2/3", *NO_LATENCY, "--report"],
                           capsys)
    assert code == 0
    assert (full.read_bytes(), page.read_bytes()) == before
    assert (models / "validation_results.shard-2-of-3.json").is_file()
    assert "report: " in out and "validation_report.partial.html (partial: shard 2/3, 1 model; " in out
    assert (models / "validation_report.partial.html").is_file()
    # --no-write: no partial file either.
    (models / "validation_results.shard-2-of-3.json").unlink()
    run_cli(["validate", "--registry", str(tiny_registry), "--shard", "2/3", *NO_LATENCY, "--no-write"], capsys)
    assert not (models / "validation_results.shard-2-of-3.json").exists()


def test_the_api_writes_the_partial_file_and_refuses_names_with_a_shard(tiny_registry):
    from modelreg import validate_all
    from modelreg.errors import UsageError

    report = validate_all(tiny_registry, shard="1/3", latency=False)
    assert list(report) == ["tinydense"]
    document = json.loads((tiny_registry.parent / "models" / "validation_results.shard-1-of-3.json").read_text())
    assert document["shard"] == {"index": 1, "count": 3, "balanced_by": "count",
                                 "plan": [["tinydense"], ["tinylstm"], ["tinygru"]]}
    with pytest.raises(UsageError, match="give model names or a shard, not both"):
        validate_all(tiny_registry, names=["tinygru"], shard="1/3")


def test_more_shards_than_models_leaves_empty_shards_that_pass_and_merge(tiny_registry, capsys):
    models = tiny_registry.parent / "models"
    for index in range(1, 6):
        code, out, _ = run_cli(["validate", "--registry", str(tiny_registry), "--shard", f"{index}/5", *NO_LATENCY],
                               capsys)
        assert code == 0, out
    assert "shard 5/5: 0 models of 3" in out
    assert json.loads((models / "validation_results.shard-5-of-5.json").read_text())["models"] == {}
    files = [str(models / f"validation_results.shard-{i}-of-5.json") for i in range(1, 6)]
    code, out, _ = run_cli(["merge-results", "--registry", str(tiny_registry), *files], capsys)
    assert code == 0 and "merged 5 shards (3 models: 3 passed)" in out


# ---------------------------------------------------------------- the merge


@pytest.fixture
def sharded(tiny_registry, capsys) -> Path:
    """The tiny registry validated in 3 shards (one model each); returns the models folder."""
    for index in (1, 2, 3):
        code, _, _ = run_cli(["validate", "--registry", str(tiny_registry), "--shard", f"{index}/3", *NO_LATENCY],
                             capsys)
        assert code == 0
    return tiny_registry.parent / "models"


def _shard_file(models: Path, index: int, count: int = 3) -> str:
    return str(models / f"validation_results.shard-{index}-of-{count}.json")


def _merge(registry: Path, files: list[str], capsys, *extra: str) -> tuple[int, str, str]:
    return run_cli(["merge-results", "--registry", str(registry), *files, *extra], capsys)


def test_merge_writes_the_results_file_and_the_report(sharded, tiny_registry, capsys):
    code, out, err = _merge(tiny_registry, [_shard_file(sharded, i) for i in (2, 3, 1)], capsys, "--report")
    assert code == 0, err
    assert "merged 3 shards (3 models: 3 passed) -> " in out and "validation_results.json" in out
    assert "report: " in out and (sharded / "validation_report.html").is_file()
    from modelreg.html_report import load_results

    document = load_results(sharded / "validation_results.json")  # schema-checked
    assert list(document["models"]) == ["tinydense", "tinylstm", "tinygru"] and document["ok"] is True
    # `modelreg report` reads the merged file like any full run's.
    code, out, _ = run_cli(["report", "--registry", str(tiny_registry), "-o", str(sharded / "again.html")], capsys)
    assert code == 0 and "(3 models, 3 passed)" in out


def test_a_missing_shard_is_refused_naming_its_models_and_nothing_is_written(sharded, tiny_registry, capsys):
    code, out, err = _merge(tiny_registry, [_shard_file(sharded, 1), _shard_file(sharded, 3)], capsys)
    assert code == 2
    assert "modelreg: error: missing shard 2/3: no file given holds it (its models: tinylstm)" in err
    assert "hint: merge the files of one run of every shard 1..N" in err
    assert not (sharded / "validation_results.json").exists()
    assert "Traceback" not in out + err


def test_a_shard_given_twice_is_refused(sharded, tiny_registry, capsys):
    code, _, err = _merge(tiny_registry, [_shard_file(sharded, i) for i in (1, 2, 2, 3)], capsys)
    assert code == 2
    assert "shard 2/3 given more than once: " in err and "(its models: tinylstm)" in err
    assert not (sharded / "validation_results.json").exists()


def test_shards_of_different_splits_are_refused(sharded, tiny_registry, capsys):
    run_cli(["validate", "--registry", str(tiny_registry), "--shard", "2/2", *NO_LATENCY], capsys)
    code, _, err = _merge(tiny_registry, [_shard_file(sharded, 1), _shard_file(sharded, 2, 2)], capsys)
    assert code == 2
    assert "the files are shards of different splits: " in err and "(expected shards I/N of one N)" in err
    assert "validation_results.shard-1-of-3.json is shard 1/3, " in err
    assert "validation_results.shard-2-of-2.json is shard 2/2 " in err


def test_overlapping_shards_planned_differently_are_refused_naming_the_models(sharded, tiny_registry, capsys, tmp_path):
    # Shard 2 was planned on a machine that saw other durations: it validated tinydense too.
    second = json.loads(Path(_shard_file(sharded, 2)).read_text())
    first = json.loads(Path(_shard_file(sharded, 1)).read_text())
    second["models"] = {"tinydense": first["models"]["tinydense"], **second["models"]}
    second["shard"]["plan"] = [[], ["tinydense", "tinylstm"], ["tinygru"]]
    changed = tmp_path / "second.json"
    changed.write_text(json.dumps(second))
    code, _, err = _merge(tiny_registry, [_shard_file(sharded, 1), str(changed), _shard_file(sharded, 3)], capsys)
    assert code == 2
    assert "the shards were planned differently: " in err
    assert "models in more than one shard: tinydense (" in err and "second.json" in err


def test_a_registry_changed_since_the_shards_ran_is_refused(sharded, tiny_registry, capsys):
    files = [_shard_file(sharded, i) for i in (1, 2, 3)]
    text = tiny_registry.read_text()
    # A model added: in no shard file.
    tiny_registry.write_text(text + text.split("[models.tinylstm]", 1)[0].replace("tinydense", "newdense"))
    code, _, err = _merge(tiny_registry, files, capsys)
    assert code == 2 and "registry.toml in no shard file: newdense" in err
    # A model removed: the shards hold results of a model the registry no longer has.
    tiny_registry.write_text(text.split("[models.tinygru]", 1)[0])
    code, _, err = _merge(tiny_registry, files, capsys)
    assert code == 2 and "models not in " in err and ": tinygru (the shards validated another version" in err


def test_a_full_results_file_or_a_broken_file_is_refused(sharded, tiny_registry, capsys, tmp_path):
    run_cli(["validate", "--registry", str(tiny_registry), *NO_LATENCY], capsys)
    code, _, err = _merge(tiny_registry, [str(sharded / "validation_results.json")], capsys)
    assert code == 2 and "not a shard's results: the file has no shard record" in err
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    code, _, err = _merge(tiny_registry, [_shard_file(sharded, 1), str(broken)], capsys)
    assert code == 2 and "broken.json:1:2: not valid JSON" in err


@pytest.mark.parametrize(("edit", "message"), [
    (lambda shard: shard.update(index=0), "shard.index"),
    (lambda shard: shard.update(index=4), "the shard record does not hold together (expected index <= count"),
    (lambda shard: shard["plan"].pop(), "found <index 1, 2 plan entries>"),
])
def test_a_shard_file_edited_into_nonsense_is_refused(edit, message, sharded, tiny_registry, capsys, tmp_path):
    document = json.loads(Path(_shard_file(sharded, 1)).read_text())
    edit(document["shard"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document))
    code, out, err = _merge(tiny_registry, [str(bad)], capsys)
    assert code == 2 and "bad.json" in err and message in err
    assert "Traceback" not in out + err


def test_merge_exits_1_when_a_model_failed_in_its_shard(tiny_registry, capsys):
    (tiny_registry.parent / "models" / "tinylstm.pt").write_bytes(b"junk")
    models = tiny_registry.parent / "models"
    codes = [run_cli(["validate", "--registry", str(tiny_registry), "--shard", f"{i}/2", *NO_LATENCY], capsys)[0]
             for i in (1, 2)]
    assert sorted(codes) == [0, 1]
    code, out, err = _merge(tiny_registry, [_shard_file(models, i, 2) for i in (1, 2)], capsys)
    assert code == 1, err
    assert "FAIL tinylstm: " in out and "merged 2 shards (3 models: 2 passed, 1 failed)" in out


def test_merged_environment_keeps_every_differing_value(sharded, tiny_registry, capsys, tmp_path):
    documents = [json.loads(Path(_shard_file(sharded, i)).read_text()) for i in (1, 2, 3)]
    documents[1]["environment"]["platform"] = "Another-runner"
    documents[2]["environment"]["time"] = "2999-01-01T00:00:00+00:00"
    files = []
    for i, document in enumerate(documents):
        files.append(tmp_path / f"s{i}.json")
        files[-1].write_text(json.dumps(document))
    out_file = tmp_path / "out.json"
    code, _, err = _merge(tiny_registry, [str(f) for f in files], capsys, "-o", str(out_file))
    assert code == 0, err
    environment = json.loads(out_file.read_text())["environment"]
    assert environment["platform"] == f"{documents[0]['environment']['platform']}; Another-runner"
    assert environment["time"] == "2999-01-01T00:00:00+00:00"  # the last shard to finish


def test_shard_files_are_written_atomically_beside_the_results(tiny_registry, capsys):
    # A killed run's temporary file beside the results is removed by the next shard run, as by a full run.
    models = tiny_registry.parent / "models"
    orphan = models / ".validation_results.shard-1-of-2.json.999999999-abcdefgh.tmp"
    orphan.write_text("partial")
    code, _, _ = run_cli(["validate", "--registry", str(tiny_registry), "--shard", "1/2", *NO_LATENCY], capsys)
    assert code == 0 and not orphan.exists()
    assert not [p for p in models.iterdir() if p.name.endswith(".tmp")]
    shutil.rmtree(models)
