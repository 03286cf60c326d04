"""``modelreg merge-results``: the partial results files of every shard of one plan
(``validate --shard I/N``, :mod:`modelreg.shards`) combined into the one results file,
as a full run of the registry writes it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .errors import Problem, UsageError
from .paths import display_path

if TYPE_CHECKING:
    from .registry import Registry

__all__ = ["MergedResults", "merge_results"]

#: How many model names a message lists before it counts the rest.
_LISTED = 20


@attrs.frozen
class MergedResults:
    """The combined results document and the shard files it was made of (in shard order)."""

    document: dict[str, Any]
    files: tuple[Path, ...]
    count: int


def _names(names: Iterable[str]) -> str:
    """Model names for a message: all of them up to a point, then a count of the rest."""
    listed = list(names)
    shown = ", ".join(listed[:_LISTED])
    return shown + (f" and {len(listed) - _LISTED} more ({len(listed)} in all)" if len(listed) > _LISTED else "")


def _read_shard(path: Path) -> dict[str, Any]:
    from .html_report import load_results

    shown = display_path(path)
    if not path.exists():
        raise UsageError.at("shard results file not found", file=shown,
                            expected="the file `modelreg validate --shard I/N` writes, "
                                     "models/validation_results.shard-I-of-N.json")
    document = load_results(path)
    if "shard" not in document:
        raise UsageError.at("not a shard's results: the file has no shard record (a full run's results "
                            "need no merging)", file=shown,
                            expected="a file `modelreg validate --shard I/N` wrote")
    record = document["shard"]
    # The schema cannot relate these numbers; a file edited by hand must not crash the merge.
    if record["index"] > record["count"] or len(record["plan"]) != record["count"]:
        raise UsageError.at("the shard record does not hold together", file=shown, key="shard",
                            expected=f"index <= count and one plan entry per shard (count {record['count']})",
                            found=f"<index {record['index']}, {len(record['plan'])} plan entries>")
    return document


def merge_results(paths: Sequence[str | os.PathLike[str]], registry: Registry) -> MergedResults:
    """Combine the partial results files of every shard of one plan into one results document.

    Refuses (one :class:`UsageError` listing every problem, naming the files and
    the models concerned): a file that is not a shard's results; files of
    different shard counts or plans; a shard given twice; a missing shard; a
    model in two files, in none, or not in ``registry``. The combined document
    is checked against the results schema. Nothing is written here.
    """
    if not paths:
        raise UsageError.at("no shard results files given", expected="the partial results file of every shard")
    files = [Path(p) for p in paths]
    documents = [_read_shard(path) for path in files]
    shown = [display_path(path) for path in files]
    records = [doc["shard"] for doc in documents]
    problems: list[Problem] = []

    counts = {record["count"] for record in records}
    if len(counts) > 1:
        what = ", ".join(f"{name} is shard {r['index']}/{r['count']}" for name, r in zip(shown, records))
        raise UsageError(Problem(f"the files are shards of different splits: {what}", expected="shards I/N of one N"))
    count = counts.pop()

    plans = {json.dumps(record["plan"]) for record in records}
    if len(plans) > 1:
        differing = [name for name, r in zip(shown, records) if r["plan"] != records[0]["plan"]]
        problems.append(Problem(
            f"the shards were planned differently: {shown[0]} and {', '.join(differing)} disagree on which models "
            "go to which shard (the registry or the durations file differed between the machines)"))
    plan = records[0]["plan"]

    by_index: dict[int, list[str]] = {}
    for name, record in zip(shown, records):
        by_index.setdefault(record["index"], []).append(name)
    for index, holders in sorted(by_index.items()):
        if len(holders) > 1:
            problems.append(Problem(f"shard {index}/{count} given more than once: {', '.join(holders)} "
                                    f"(its models: {_names(plan[index - 1]) or 'none'})"))
    for index in range(1, count + 1):
        if index not in by_index:
            problems.append(Problem(f"missing shard {index}/{count}: no file given holds it "
                                    f"(its models: {_names(plan[index - 1]) or 'none'})"))

    holders_of: dict[str, list[tuple[int, str]]] = {}
    for name, record, document in zip(shown, records, documents):
        for model in document["models"]:
            holders_of.setdefault(model, []).append((record["index"], name))
    # A model in two files of one shard number is said above (a shard given twice); in two
    # different shards, the plans differed.
    twice = {model: held for model, held in holders_of.items() if len({index for index, _ in held}) > 1}
    if twice:
        problems.append(Problem("models in more than one shard: "
                                + _names(f"{m} ({', '.join(n for _, n in held)})" for m, held in twice.items())))
    unplanned = {model for index in range(1, count + 1) if index not in by_index for model in plan[index - 1]}
    missing = [model for model in registry.names if model not in holders_of and model not in unplanned]
    if missing:
        problems.append(Problem(f"models of {display_path(registry.path)} in no shard file: {_names(missing)}",
                                expected="every model of the registry in exactly one shard"))
    extra = [model for model in holders_of if model not in registry.names]
    if extra:
        problems.append(Problem(f"models not in {display_path(registry.path)}: {_names(extra)} "
                                "(the shards validated another version of the registry)"))
    if problems:
        raise UsageError(*problems, hint="merge the files of one run of every shard 1..N, made from the same registry "
                                         "and results file")

    order = sorted(range(len(documents)), key=lambda i: records[i]["index"])
    documents = [documents[i] for i in order]
    files = [files[i] for i in order]
    document = _combine(documents, registry)
    from .schemas import schema_problems

    invalid = schema_problems(document, "validation_results", file="the merged results")
    if invalid:
        raise UsageError(*invalid)
    return MergedResults(document, tuple(files), count)


def _combine(documents: list[dict[str, Any]], registry: Registry) -> dict[str, Any]:
    """One results document as a full run of ``registry`` would write it (models in registry order)."""
    from .report import RESULTS_FORMAT

    models_by_name = {name: model for doc in documents for name, model in doc["models"].items()}
    models = {name: models_by_name[name] for name in registry.names}
    problems = _ordered_union((doc["problems"] for doc in documents), _full_run_problems(registry))
    warnings = _ordered_union(doc["warnings"] for doc in documents)
    ok = not problems and bool(models) and all(model["ok"] for model in models.values())
    return {
        "format": RESULTS_FORMAT,
        "ok": ok,
        "registry": str(registry.path),
        "environment": _merged_environment([doc["environment"] for doc in documents]),
        "problems": problems,
        "warnings": warnings,
        "models": models,
    }


def _full_run_problems(registry: Registry) -> list[str]:
    """The run-level problems a full run of ``registry`` lists, in its order: used only to order
    the shards' own problems (each shard lists the registry's, then those of its models)."""
    from .validation import _artifact_path_problems

    return [str(p) for p in (*registry.problems, *_artifact_path_problems(registry, list(registry.names)))]


def _ordered_union(lists: Iterable[Sequence[str]], order: Sequence[str] = ()) -> list[str]:
    """Every distinct text of ``lists`` once: those in ``order`` in its order, then the rest as first seen."""
    seen = list(dict.fromkeys(text for texts in lists for text in texts))
    rank = {text: i for i, text in enumerate(order)}
    return sorted(seen, key=lambda text: (0, rank[text]) if text in rank else (1, seen.index(text)))


def _merged_environment(environments: list[Mapping[str, str]]) -> dict[str, str]:
    """The shards' environments as one: a value every shard shares is kept; differing values
    (two runner images) are all kept, joined with "; " in shard order, so none is hidden.
    ``time`` is the last shard's, when the run ended. torch "not used" (a shard that built
    no model) gives way to the version the other shards used."""
    merged: dict[str, str] = {}
    keys = list(dict.fromkeys(key for env in environments for key in env))
    for key in keys:
        values = list(dict.fromkeys(env[key] for env in environments if key in env))
        if key == "time":
            merged[key] = max(values)  # ISO 8601 in UTC: the text order is the time order
            continue
        if key == "torch" and len(values) > 1:
            values = [v for v in values if v != "not used"] or values
        merged[key] = "; ".join(values)
    return merged
