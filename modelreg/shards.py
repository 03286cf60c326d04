"""Shards: a registry's validation split over CI machines (issue 21, section 3).

``modelreg validate --shard I/N`` validates a deterministic share of the
models and writes a partial results file; ``modelreg merge-results`` combines
the N partial files into the one results file. The machines are a CI job
matrix: modelreg schedules nothing itself, it only decides, the same way on
every machine, which models each shard holds.

The plan (:func:`plan_shards`) is a pure function of the registry's model
names (in file order), the number of shards and the per-model durations of
the last results file: longest model first, each to the shard with the least
work so far. Durations are whole microseconds, so every machine adds the same
integers and reaches the same plan; no clock, host name or random number takes
part.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .errors import Problem, UsageError
from .paths import display_path

if TYPE_CHECKING:
    from .registry import Registry

__all__ = [
    "MergedResults",
    "Shard",
    "ShardPlan",
    "load_durations",
    "merge_results",
    "parse_shard",
    "plan_shard",
    "plan_shards",
    "shard_results_path",
]

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
#: The form a shard is written in, for messages.
SHARD_FORM = "I/N: this machine's shard I of N shards, whole numbers with 1 <= I <= N (such as 2/3)"
#: How many model names a message lists before it counts the rest.
_LISTED = 20


@attrs.frozen
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str | Shard) -> Shard:
    """``"2/3"`` -> ``Shard(2, 3)``; anything else is a :class:`UsageError` naming the form expected."""
    if isinstance(text, Shard):
        shard = text
    else:
        match = _SHARD.match(str(text))
        if match is None:
            raise UsageError.at("not a shard", key="shard", expected=SHARD_FORM, found=str(text))
        shard = Shard(int(match[1]), int(match[2]))
    if shard.count < 1:
        raise UsageError.at("there must be at least one shard", key="shard", expected=SHARD_FORM, found=str(text))
    if not 1 <= shard.index <= shard.count:
        raise UsageError.at(f"there is no shard {shard.index} of {shard.count}", key="shard",
                            expected=SHARD_FORM, found=str(text))
    return shard


def shard_results_path(registry: Registry, shard: Shard) -> Path:
    """Where shard ``I/N`` writes its partial results: ``models/validation_results.shard-I-of-N.json``.

    Never the full results file: a shard's results are not the record of the whole registry.
    """
    from .validation import results_path

    full = results_path(registry)
    return full.with_name(f"{full.stem}.shard-{shard.index}-of-{shard.count}{full.suffix}")


# ---------------------------------------------------------------- the plan


def load_durations(path: Path) -> tuple[dict[str, float] | None, str | None]:
    """Per-model seconds from a results file, and a note when the file exists but cannot be used.

    ``(None, None)``: no file (the first run): the plan balances by model count.
    A file that is not readable results is not fatal either (the shards can still
    be planned), but the note says so: every machine must see the same file.
    """
    if not path.exists():
        return None, None
    try:
        from .html_report import load_results

        document = load_results(path)
    except UsageError as exc:
        return None, (f"{exc.problems[0]}; the shards are balanced by model count instead of by the "
                      f"durations in {display_path(path)}")
    durations = {name: float(model["seconds"]) for name, model in document["models"].items()}
    return durations, None


def _weights(names: Sequence[str], durations: Mapping[str, float] | None) -> tuple[list[int], str]:
    """Each model's weight in whole microseconds, and what the plan was balanced by."""
    known = {n: max(0, round(float(durations[n]) * 1_000_000)) for n in names if durations and n in durations}
    if not known:
        return [1] * len(names), "count"
    # A model the file does not know (added since) counts as a typical one: the median, not the
    # mean, so that one very slow model does not make every new model look slow.
    ordered = sorted(known.values())
    middle = len(ordered) // 2
    typical = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) // 2
    return [known.get(n, typical) for n in names], "durations"


def plan_shards(names: Sequence[str], count: int, durations: Mapping[str, float] | None = None
                ) -> tuple[list[list[str]], str]:
    """Split ``names`` into ``count`` shards; returns the shards (each in ``names``' order) and
    ``"durations"`` or ``"count"``, what the plan was balanced by.

    Greedy longest-processing-time: models from the slowest (ties: the earlier in
    ``names``), each to the shard with the least work (ties: the lowest index).
    Without durations every model weighs the same and this deals them round-robin.
    """
    if count < 1:
        raise UsageError.at("there must be at least one shard", key="shard", expected=SHARD_FORM, found=count)
    weights, balanced_by = _weights(names, durations)
    loads = [0] * count
    members: list[list[int]] = [[] for _ in range(count)]
    for position in sorted(range(len(names)), key=lambda i: (-weights[i], i)):
        target = min(range(count), key=lambda s: (loads[s], s))
        loads[target] += weights[position]
        members[target].append(position)
    return [[names[i] for i in sorted(group)] for group in members], balanced_by


@attrs.frozen
class ShardPlan:
    """One shard of a registry's plan: what it validates, and the whole plan (recorded in its
    partial results file so that the merge can name the models of a missing shard)."""

    shard: Shard
    plan: tuple[tuple[str, ...], ...]
    balanced_by: str
    #: Why the durations were not used (a results file that exists but is not readable), or None.
    note: str | None = None

    @property
    def models(self) -> list[str]:
        return list(self.plan[self.shard.index - 1])

    def record(self) -> dict[str, Any]:
        """The ``shard`` object of a partial results file."""
        return {"index": self.shard.index, "count": self.shard.count, "balanced_by": self.balanced_by,
                "plan": [list(group) for group in self.plan]}


def plan_shard(registry: Registry, shard: Shard | str, durations: str | os.PathLike[str] | None = None) -> ShardPlan:
    """The plan of ``registry`` for ``shard``, balanced by the durations in ``durations`` (default:
    the registry's results file, ``models/validation_results.json``) when it exists."""
    from .validation import results_path

    chosen = parse_shard(shard)
    source = results_path(registry) if durations is None else Path(durations)
    if durations is not None and not source.is_file():
        # Named on purpose: a typo must not silently fall back to balancing by count.
        raise UsageError.at("durations file not found" if not source.exists() else "expected a file",
                            file=display_path(source), expected="a validation results file (models/validation_results.json)")
    seconds, note = load_durations(source)
    groups, balanced_by = plan_shards(list(registry.names), chosen.count, seconds)
    return ShardPlan(chosen, tuple(tuple(g) for g in groups), balanced_by, note)


# ---------------------------------------------------------------- the merge


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
