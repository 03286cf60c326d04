"""Shards: a registry's validation split over CI machines (issue 21, section 3): the plan.

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
part. The merge is :mod:`modelreg.merging`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .errors import UsageError
from .paths import RESULTS_FILENAME, display_path

if TYPE_CHECKING:
    from .registry import Registry

__all__ = [
    "SHARD_FORM",
    "Shard",
    "ShardPlan",
    "load_durations",
    "parse_shard",
    "plan_shard",
    "plan_shards",
    "shard_results_path",
]

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
#: The form a shard is written in, for messages.
SHARD_FORM = "I/N: this machine's shard I of N shards, whole numbers with 1 <= I <= N (such as 2/3)"


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
    full = registry.root / RESULTS_FILENAME
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
    chosen = parse_shard(shard)
    source = registry.root / RESULTS_FILENAME if durations is None else Path(durations)
    if durations is not None and not source.is_file():
        # Named on purpose: a typo must not silently fall back to balancing by count.
        raise UsageError.at("durations file not found" if not source.exists() else "expected a file",
                            file=display_path(source), expected="a validation results file (models/validation_results.json)")
    seconds, note = load_durations(source)
    groups, balanced_by = plan_shards(list(registry.names), chosen.count, seconds)
    return ShardPlan(chosen, tuple(tuple(g) for g in groups), balanced_by, note)
