"""``modelreg diff``: what changed between a registry and an older one, model by model.

For each model: added, removed or renamed (a rename is an added and a removed
entry whose checkpoints hold the same bytes); the entry's changed fields; the
layer stack as a unified diff of ``modelreg show``'s lines; every change with
the version bump it needs (:mod:`modelreg.versioning`), interface breaks
named; the weights tensor by tensor; the output drift on the parity probes
(edge cases and the stream, :mod:`modelreg.inputs`); and latency, where both
sides have validation results.

The result is one JSON document (``schemas/diff.schema.json``); the text, the
report's section and the CI gates are all read from it. Importing this module
costs nothing: torch and numpy are imported only to compare weights and run
the models, and only for models whose weights or layers changed.
"""

from __future__ import annotations

import difflib
import hashlib
import html
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .errors import ModelRegError, Problem, UsageError, did_you_mean
from .spec import layer_label, layer_params
from .versioning import LEVELS, Change, check_version, entry_changes

if TYPE_CHECKING:
    from .history import Base
    from .registry import Registry
    from .spec import ModelSpec

__all__ = ["FORMAT", "Gates", "apply_gates", "diff_registries", "render_html", "render_text", "HTML_CSS"]

#: The document's format number (``schemas/diff.schema.json``).
FORMAT = 1
#: ``--fail-on`` values.
FAIL_ON = ("breaking", "version")


# ---------------------------------------------------------------- small pieces


def _number(value: float) -> float | None:
    """A figure for JSON: None for NaN and infinities (JSON has neither)."""
    return float(value) if math.isfinite(value) else None


def _digest(spec: ModelSpec) -> str | None:
    try:
        return hashlib.sha256(spec.checkpoint.read_bytes()).hexdigest()
    except OSError:
        return None


def architecture_lines(spec: ModelSpec) -> list[str]:
    """The layer stack as ``modelreg show`` prints it, one line per layer with its parameter count,
    without the index (an inserted layer would otherwise change every line after it)."""
    lines = [f"input {spec.in_features}"]
    size = spec.in_features
    for layer in spec.layers:
        lines.append(f"{layer_label(layer, size)}  ({layer_params(layer, size):,} params)")
        size = layer.units
    lines.append(f"output {spec.out_features}, {spec.computed_params:,} params")
    return lines


def _architecture(old: ModelSpec, new: ModelSpec, old_label: str, new_label: str) -> dict[str, Any]:
    before, after = architecture_lines(old), architecture_lines(new)
    changed = before != after
    lines: list[str] = []
    if changed:
        # The whole stack as context: stacks are short, and a reader wants to see where a change sits.
        lines = [line.rstrip("\n") for line in difflib.unified_diff(
            before, after, fromfile=old_label, tofile=new_label, n=max(len(before), len(after)), lineterm="")]
    return {"changed": changed, "params_old": old.computed_params, "params_new": new.computed_params,
            "layers_old": len(old.layers), "layers_new": len(new.layers), "diff": lines}


def _fields(old: ModelSpec, new: ModelSpec) -> list[dict[str, Any]]:
    """Entry keys whose values differ (the layers have their own diff, the version its own line)."""
    a, b = dict(old.entry), dict(new.entry)
    out = []
    for key in [*a, *(k for k in b if k not in a)]:
        if key in ("layers", "version") or a.get(key) == b.get(key):
            continue
        out.append({"key": key, "old": _plain(a.get(key)), "new": _plain(b.get(key))})
    return out


def _plain(value: Any) -> Any:
    """A TOML value for JSON (dates as text)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value if not isinstance(value, float) or math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


# ---------------------------------------------------------------- weights


def _weights(old: ModelSpec, new: ModelSpec, same_bytes: bool) -> dict[str, Any]:
    """Each tensor: changed or not, max |delta| and the relative change ``||delta|| / ||old||`` (L2)."""
    if same_bytes:
        return {"same_bytes": True, "tensors": [], "changed": 0, "total": None}
    import torch

    from .checkpoint import read_state_dict

    before, after = read_state_dict(old), read_state_dict(new)
    rows: list[dict[str, Any]] = []
    for name in [*after, *(k for k in before if k not in after)]:
        a, b = before.get(name), after.get(name)
        row: dict[str, Any] = {"name": name, "shape_old": list(a.shape) if a is not None else None,
                               "shape_new": list(b.shape) if b is not None else None,
                               "max_abs_delta": None, "relative_change": None}
        if a is None:
            row["status"] = "added"
        elif b is None:
            row["status"] = "removed"
        elif a.shape != b.shape:
            row["status"] = "reshaped"
        else:
            delta = (b.double() - a.double()).abs()
            row["status"] = "unchanged" if torch.equal(a, b) else "changed"
            if delta.numel():
                row["max_abs_delta"] = _number(float(delta.max()))
                norm = float(a.double().norm())
                change = float(delta.norm())
                row["relative_change"] = _number(change / norm) if norm > 0 else (0.0 if change == 0 else None)
            else:
                row["max_abs_delta"] = row["relative_change"] = 0.0
        rows.append(row)
    changed = sum(r["status"] != "unchanged" for r in rows)
    return {"same_bytes": False, "tensors": rows, "changed": changed, "total": len(rows)}


# ---------------------------------------------------------------- output drift


def _drift(old: ModelSpec, new: ModelSpec) -> dict[str, Any]:
    """Both models on the same probes: the parity edge cases (held for 8 frames when either is stateful)
    and the 64-frame stream, seeded (:func:`modelreg.parity.parity_cases`), each run from a zero state.
    Max and mean |new - old| overall, per probe and per output, and the relative drift
    ``max |new - old| / max |old|``."""
    import numpy as np

    from .parity import parity_cases, reference_outputs

    before, after = old.load(), new.load()
    cases = parity_cases(new.in_features, old.is_stateful or new.is_stateful, with_stream=True,
                         input_range=new.input_range)
    groups: dict[int, list[str]] = {}
    for name, frames in cases.items():
        groups.setdefault(frames.shape[1], []).append(name)
    olds, deltas, per_case = [], [], {}
    finite = True
    for names in groups.values():
        frames = np.concatenate([cases[name] for name in names], axis=0)
        a = reference_outputs(before, frames).astype(np.float64)
        b = reference_outputs(after, frames).astype(np.float64)
        finite = finite and bool(np.isfinite(a).all() and np.isfinite(b).all())
        delta = np.abs(b - a)
        for row, name in enumerate(names):
            per_case[name] = _number(float(np.max(delta[row]))) if delta[row].size else 0.0
        olds.append(a.reshape(-1, a.shape[-1]))
        deltas.append(delta.reshape(-1, delta.shape[-1]))
    old_all, delta_all = np.concatenate(olds), np.concatenate(deltas)
    scale = np.max(np.abs(old_all), axis=0)
    outputs = []
    for j in range(delta_all.shape[1]):
        worst = float(np.max(delta_all[:, j]))
        outputs.append({"index": j, "max_abs": _number(worst), "mean_abs": _number(float(np.mean(delta_all[:, j]))),
                        "relative": _relative(worst, float(scale[j]))})
    worst = float(np.max(delta_all))
    return {"ran": True, "finite": finite, "max_abs": _number(worst), "mean_abs": _number(float(np.mean(delta_all))),
            "relative": _relative(worst, float(np.max(np.abs(old_all)))),
            "frames": int(delta_all.shape[0]), "cases": per_case, "outputs": outputs, "note": ""}


def _relative(delta: float, scale: float) -> float | None:
    if not (math.isfinite(delta) and math.isfinite(scale)):
        return None
    if scale > 0:
        return delta / scale
    return 0.0 if delta == 0 else None


# ---------------------------------------------------------------- latency


def _latency_checks(results: Mapping[str, Any] | None, name: str) -> dict[str, Mapping[str, Any]]:
    """The latency checks (figures with p50/p95/p99) of one model in a results document, by check name."""
    if results is None:
        return {}
    model = results.get("models", {}).get(name)
    if not isinstance(model, Mapping):
        return {}
    out = {}
    for check in model.get("checks", []):
        figures = check.get("figures") or {}
        if all(isinstance(figures.get(k), (int, float)) for k in ("p50_ms", "p95_ms", "p99_ms")):
            out[str(check["name"])] = figures
    return out


def _latency(old_name: str, new_name: str, spec: ModelSpec, base: Base,
             current: Mapping[str, Any] | None, current_note: str) -> dict[str, Any]:
    before, after = _latency_checks(base.results, old_name), _latency_checks(current, new_name)
    rows = []
    for check in [c for c in after if c in before]:
        stat = spec.latency_stat if f"{spec.latency_stat}_ms" in after[check] else "p99"
        a, b = before[check].get(f"{stat}_ms"), after[check].get(f"{stat}_ms")
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            continue
        rows.append({"check": check, "stat": stat, "old_ms": float(a), "new_ms": float(b),
                     "change": _number((b - a) / a) if a > 0 else None})
    note = ""
    if not rows:  # the base's reason first: that side usually has none (results are not committed)
        missing = [n for n, found in ((base.results_note, before), (current_note, after)) if not found]
        note = missing[0] if missing else "no latency check on both sides"
    return {"rows": rows, "note": note}


# ---------------------------------------------------------------- the whole comparison


def diff_registries(current: Registry, base: Base, *, drift: bool = True,
                    current_results: Mapping[str, Any] | None = None, current_results_note: str = "",
                    latency: bool = True) -> dict[str, Any]:
    """Compare ``current`` with ``base``: the diff document (``schemas/diff.schema.json``), gates not applied.

    ``drift=False`` runs no model (``modelreg check-version``); weights are still compared
    tensor by tensor where the checkpoint bytes differ, since the version check needs to know.
    """
    old_reg = base.registry
    problems: list[str] = []
    models: dict[str, dict[str, Any]] = {}
    old_names, new_names = list(old_reg.names), list(current.names)

    for name, problems_of in list(current.invalid.items()):
        models[name] = _invalid(name, [str(p) for p in problems_of])
        problems += [str(p) for p in problems_of]
    for name, problems_of in list(old_reg.invalid.items()):
        shown = [str(base.rename(p)) for p in problems_of]
        if name in models:
            models[name]["problems"] += shown
        elif name not in current.invalid:
            models[name] = _invalid(name, shown)
        problems += shown

    # Renames: an entry gone and one new whose checkpoints hold the same bytes.
    removed = [n for n in old_names if n in old_reg and n not in new_names]
    added = [n for n in new_names if n in current and n not in old_names]
    renamed: dict[str, str] = {}
    gone_digests = {n: _digest(old_reg[n]) for n in removed if n not in base.missing}
    for name in added:
        digest = _digest(current[name])
        matches = [old for old, d in gone_digests.items() if d is not None and d == digest and old not in renamed.values()]
        if len(matches) == 1:
            renamed[name] = matches[0]

    old_label = f"{base.label}" if base.kind == "file" else f"{base.revision}"
    for name in new_names:
        if name not in current or name in models:
            continue
        spec = current[name]
        old_name = renamed.get(name, name)
        if old_name not in old_reg:
            models[name] = {"status": "added", "old_name": None, "level": None, "fields": [], "architecture": None,
                            "breaks": [], "changes": [],
                            "version": check_version(None, spec.entry, []).to_json(),
                            "weights": None, "drift": None, "latency": None, "problems": [],
                            "summary": f"{len(spec.layers)} layers, {spec.computed_params:,} params, "
                                       f"{spec.in_features} -> {spec.out_features}"}
            continue
        models[name] = _compare(old_reg[old_name], spec, old_name, name, base, old_label,
                                drift=drift, latency=latency, current_results=current_results,
                                current_results_note=current_results_note)
        problems += models[name]["problems"]
    for name in removed:
        if name in renamed.values() or name in models:
            continue
        spec = old_reg[name]
        change = Change("major", "name", "entry removed: hosts using it lose it")
        models[name] = {"status": "removed", "old_name": name, "level": "major", "fields": [], "architecture": None,
                        "breaks": [change.to_json()], "changes": [change.to_json()], "version": None,
                        "weights": None, "drift": None, "latency": None, "problems": [],
                        "summary": f"{len(spec.layers)} layers, {spec.computed_params:,} params, "
                                   f"{spec.in_features} -> {spec.out_features}"}
    return {
        "format": FORMAT,
        "registry": str(current.path),
        "base": {"kind": base.kind, "label": base.label, "registry": base.shown, "revision": base.revision,
                 "commit": base.commit},
        "models": models,
        "problems": list(dict.fromkeys(problems)),
        "ok": not problems,
    }


def _invalid(name: str, problems: list[str]) -> dict[str, Any]:
    return {"status": "invalid", "old_name": None, "level": None, "fields": [], "architecture": None, "breaks": [],
            "changes": [], "version": None, "weights": None, "drift": None, "latency": None, "problems": problems,
            "summary": "invalid entry: not compared"}


def _compare(old: ModelSpec, new: ModelSpec, old_name: str, name: str, base: Base, old_label: str, *,
             drift: bool, latency: bool, current_results: Mapping[str, Any] | None,
             current_results_note: str) -> dict[str, Any]:
    problems: list[str] = []
    old_digest = None if old_name in base.missing else _digest(old)
    new_digest = _digest(new)
    weights: dict[str, Any] | None = None
    weights_changed: bool | None = None
    if old_digest is None:
        problems.append(base.missing.get(old_name) or str(Problem("checkpoint not readable", file=base.shown,
                                                                  key=f"models.{old_name}.checkpoint")))
    if new_digest is None:
        from .paths import display_path

        problems.append(str(Problem("checkpoint file not found; run `modelreg init`: weights and drift not compared",
                                    file=display_path(new.checkpoint), key=f"models.{name}.checkpoint")))
    if old_digest is not None and new_digest is not None:
        try:
            weights = _weights(old, new, old_digest == new_digest)
            weights_changed = weights["changed"] > 0
        except ModelRegError as exc:
            problems += [str(base.rename(p)) for p in exc.problems]
    changes = entry_changes(old, new, weights_changed=weights_changed, renamed_from=old_name if old_name != name else None)
    verdict = check_version(old.entry, new.entry, changes)
    if not verdict.ok:  # a failure names the file and key, as every user error does
        from .paths import display_path

        verdict = attrs.evolve(verdict, message=f"{display_path(new.registry_file)}: models.{name}.version: {verdict.message}")
    same_compute = old.layers == new.layers and old.in_features == new.in_features and old_digest == new_digest
    out: dict[str, Any] = {
        "status": "renamed" if old_name != name else ("changed" if changes or verdict.old != verdict.new else "unchanged"),
        "old_name": old_name,
        "level": max((c.level for c in changes), key=LEVELS.index, default=None),
        "fields": _fields(old, new),
        "architecture": _architecture(old, new, f"{old_label}: {old_name}", f"now: {name}"),
        "breaks": [c.to_json() for c in changes if c.level == "major"],
        "changes": [c.to_json() for c in changes],
        "version": verdict.to_json(),
        "weights": weights,
        "drift": None,
        "latency": _latency(old_name, name, new, base, current_results, current_results_note) if latency else None,
        "problems": problems,
        "summary": "",
    }
    if drift:
        fits = old.in_features == new.in_features and old.out_features == new.out_features and old.dtype == new.dtype
        if not fits:
            sizes = f"{old.in_features} -> {old.out_features} then, {new.in_features} -> {new.out_features} now"
            out["drift"] = _not_run(f"not compared: the interface changed ({sizes})")
        elif same_compute and old_digest is not None:
            out["drift"] = _not_run("none: same layers and checkpoint bytes (not run: the outputs are identical)",
                                    identical=True)
        elif weights is None:
            out["drift"] = _not_run("not compared: a checkpoint could not be read")
        else:
            try:
                out["drift"] = _drift(old, new)
            except ModelRegError as exc:
                problems += [str(base.rename(p)) for p in exc.problems]
                out["drift"] = _not_run("not compared: a model could not be loaded")
    out["problems"] = problems
    return out


def _not_run(note: str, *, identical: bool = False) -> dict[str, Any]:
    zero = 0.0 if identical else None
    return {"ran": False, "finite": True, "max_abs": zero, "mean_abs": zero, "relative": zero, "frames": 0,
            "cases": {}, "outputs": [], "note": note}


# ---------------------------------------------------------------- gates


@attrs.frozen
class Gates:
    """What makes ``modelreg diff`` exit 1: ``fail_on`` (``breaking``: an interface break, a removed or renamed
    entry; ``version``: a declared bump too small) and the largest output drift allowed, for every
    compared model (``max_drift``) or per model (``per_model``, which wins)."""

    fail_on: frozenset[str] = frozenset()
    max_drift: float | None = None
    per_model: Mapping[str, float] = attrs.field(factory=dict)

    def limit(self, name: str) -> float | None:
        return self.per_model.get(name, self.max_drift)


def parse_max_drift(values: Sequence[str]) -> tuple[float | None, dict[str, float]]:
    """``--max-drift X`` (every model) and ``--max-drift NAME=X`` (one model), each X a finite number >= 0."""
    overall: float | None = None
    per_model: dict[str, float] = {}
    for text in values:
        name, sep, number = text.rpartition("=")
        try:
            value = float(number)
        except ValueError:
            value = float("nan")
        if not (math.isfinite(value) and value >= 0) or (sep and not name):
            raise UsageError.at("not a drift limit", key="--max-drift",
                                expected="a finite number >= 0 (every model), or NAME=NUMBER (one model), "
                                         "such as 1e-3 or groovepredictor=0.05", found=text)
        if sep:
            per_model[name] = value
        else:
            overall = value
    return overall, per_model


def apply_gates(document: dict[str, Any], gates: Gates, known: Sequence[str], registry_shown: str) -> list[str]:
    """Judge ``document`` against ``gates``; records ``document["gate"]`` and returns what crossed, in words.

    A per-model limit naming a model of neither registry is a usage error."""
    for name in gates.per_model:
        if name not in known:
            raise UsageError.at(f"names no model of either registry{did_you_mean(name, known)}",
                                file=registry_shown, key="--max-drift", expected="one of " + ", ".join(known),
                                found=name)
    crossed: list[str] = []
    for name, model in document["models"].items():
        if "breaking" in gates.fail_on:
            for change in model["breaks"]:
                crossed.append(f"{name}: breaking: {change['what']}")
        if "version" in gates.fail_on and model["version"] is not None and not model["version"]["ok"]:
            crossed.append(f"{name}: version: {model['version']['message']}")
        limit = gates.limit(name)
        drift = model.get("drift")
        if limit is not None and drift is not None and drift["ran"]:
            worst = drift["max_abs"]
            if worst is None or not drift["finite"]:
                crossed.append(f"{name}: drift: outputs not finite on one side (limit {limit:g})")
            elif worst > limit:
                crossed.append(f"{name}: drift: max |drift| {worst:.3g} > {limit:g}")
    document["gate"] = {"fail_on": sorted(gates.fail_on), "max_drift": gates.max_drift,
                        "max_drift_per_model": dict(gates.per_model), "crossed": crossed}
    return crossed


# ---------------------------------------------------------------- text


def _g(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}%"


def render_text(document: Mapping[str, Any], *, verbose: bool = False) -> str:
    """The document for people (``modelreg diff``'s output)."""
    base = document["base"]
    from pathlib import Path

    from .paths import display_path

    lines = [f"modelreg diff: {display_path(Path(document['registry']))} against {base['label']}"]
    unchanged = [n for n, m in document["models"].items() if m["status"] == "unchanged"]
    for name, model in document["models"].items():
        if model["status"] == "unchanged":
            continue
        lines.append("")
        lines += _model_text(name, model, verbose)
    if unchanged:
        lines.append("")
        lines.append(f"unchanged: {', '.join(unchanged)}")
    gate = document.get("gate")
    if gate is not None and (gate["fail_on"] or gate["max_drift"] is not None or gate["max_drift_per_model"]):
        asked = [f"--fail-on {f}" for f in gate["fail_on"]]
        if gate["max_drift"] is not None:
            asked.append(f"--max-drift {gate['max_drift']:g}")
        asked += [f"--max-drift {n}={v:g}" for n, v in gate["max_drift_per_model"].items()]
        lines.append("")
        if gate["crossed"]:
            lines.append(f"gate ({', '.join(asked)}): crossed")
            lines += [f"  {c}" for c in gate["crossed"]]
        else:
            lines.append(f"gate ({', '.join(asked)}): within")
    return "\n".join(lines)


def _model_text(name: str, model: Mapping[str, Any], verbose: bool) -> list[str]:
    status = model["status"]
    level = f", needs a {model['level']} bump" if model["level"] else ""
    head = {"renamed": f"{name}: renamed from {model['old_name']}", "added": f"{name}: added",
            "removed": f"{name}: removed", "invalid": f"{name}: invalid entry"}.get(status, f"{name}: changed")
    breaking = " (BREAKING)" if model["breaks"] else ""
    lines = [f"{head}{breaking}{level}"]
    if status in ("added", "removed", "invalid"):
        lines.append(f"  {model['summary']}")
    for change in model["breaks"]:
        lines.append(f"  break        {change['what']}")
    for field in model["fields"]:
        lines.append(f"  field        {field['key']}: {_show(field['old'])} -> {_show(field['new'])}")
    arch = model["architecture"]
    if arch is not None:
        if arch["changed"]:
            lines.append(f"  architecture {arch['layers_old']} -> {arch['layers_new']} layers, "
                         f"params {arch['params_old']:,} -> {arch['params_new']:,}")
            lines += [f"    {line}" for line in arch["diff"]]
        else:
            lines.append(f"  architecture unchanged ({arch['layers_new']} layers, {arch['params_new']:,} params)")
    weights = model["weights"]
    if weights is not None:
        if weights["same_bytes"]:
            lines.append("  weights      unchanged (same checkpoint bytes)")
        else:
            rows = weights["tensors"]
            lines.append(f"  weights      {weights['changed']} of {weights['total']} tensors changed")
            shown = rows if verbose else [r for r in rows if r["status"] != "unchanged"]
            width = max((len(r["name"]) for r in shown), default=0)
            for row in shown:
                if row["status"] in ("changed", "unchanged"):
                    figures = (f"max |d| {_g(row['max_abs_delta'])}  relative {_g(row['relative_change'])}"
                               if row["status"] == "changed" else "")
                    lines.append(f"    {row['name']:<{width}}  {row['status']:<9}  {figures}".rstrip())
                else:
                    lines.append(f"    {row['name']:<{width}}  {row['status']:<9}  "
                                 f"{row['shape_old']} -> {row['shape_new']}")
    drift = model["drift"]
    if drift is not None:
        if drift["ran"]:
            worst = sorted(drift["outputs"], key=lambda o: -(o["max_abs"] or 0.0))[:3]
            finite = "" if drift["finite"] else " (NOT FINITE on one side)"
            lines.append(f"  drift        max {_g(drift['max_abs'])}, mean {_g(drift['mean_abs'])}, "
                         f"relative {_g(drift['relative'])}{finite} over {len(drift['cases'])} probes "
                         f"({drift['frames']} frames)")
            lines.append("    worst outputs: " + ", ".join(
                f"#{o['index']} max {_g(o['max_abs'])} mean {_g(o['mean_abs'])} rel {_g(o['relative'])}" for o in worst))
            lines.append("    per probe: " + ", ".join(f"{k} {_g(v)}" for k, v in drift["cases"].items()))
        else:
            lines.append(f"  drift        {drift['note']}")
    lat = model["latency"]
    if lat is not None:
        if lat["rows"]:
            for row in lat["rows"]:
                lines.append(f"  latency      {row['check']} {row['stat']} {row['old_ms']:.3g} ms -> "
                             f"{row['new_ms']:.3g} ms ({_pct(row['change'])})")
        else:
            lines.append(f"  latency      not compared: {lat['note']}")
    version = model["version"]
    if version is not None and version["status"] != "undeclared":
        mark = "" if version["ok"] else "FAIL "
        lines.append(f"  version      {mark}{version['message']}")
    minor = [c for c in model["changes"] if c["level"] != "major"]
    if minor:
        lines.append("  changes      " + "; ".join(f"{c['level']}: {c['what']}" for c in minor))
    for problem in model["problems"]:
        lines.append(f"  error        {problem}")
    return lines


def _show(value: Any) -> str:
    return "(none)" if value is None else repr(value) if isinstance(value, str) else str(value)


# ---------------------------------------------------------------- HTML (a section of the report)

HTML_CSS = """
.diff pre{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:6px 10px;overflow-x:auto;margin:4px 0}
.diff .add{color:#1a7f37}.diff .del{color:#cf222e}.diff .hunk{color:#8250df}
.diff h4{margin:10px 0 2px;font-size:14px}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def render_html(document: Mapping[str, Any]) -> str:
    """The report's section *Changes since BASE*: one block per model that changed."""
    base = document["base"]
    out = [f'<div class="card diff" id="diff"><h2>Changes since {_e(base["label"])}</h2>']
    gate = document.get("gate") or {}
    if gate.get("crossed"):
        out.append('<ul class="problems">' + "".join(f"<li>{_e(c)}</li>" for c in gate["crossed"]) + "</ul>")
    rows = ["<tr><th>model</th><th>status</th><th>bump needed</th><th>version</th><th>max drift</th></tr>"]
    for name, model in document["models"].items():
        drift = model.get("drift") or {}
        version = model.get("version") or {}
        status = model["status"] + (" (breaking)" if model["breaks"] else "")
        css = "fail" if model["breaks"] or version.get("ok") is False or model["problems"] else "pass"
        rows.append(f'<tr class="{css}"><td><a href="#diff-{_e(name)}">{_e(name)}</a></td><td>{_e(status)}</td>'
                    f"<td>{_e(model['level'] or '-')}</td><td>{_e(version.get('message', '-'))}</td>"
                    f"<td>{_e(_g(drift.get('max_abs')) if drift.get('ran') else '-')}</td></tr>")
    out.append(f"<table>{''.join(rows)}</table>")
    for name, model in document["models"].items():
        if model["status"] == "unchanged":
            continue
        out.append(f'<h4 id="diff-{_e(name)}">{_e(name)}</h4><pre>')
        for line in _model_text(name, model, verbose=False)[1:]:
            stripped = line.strip()
            css = ("add" if stripped.startswith("+") and not stripped.startswith("+++") else
                   "del" if stripped.startswith("-") and not stripped.startswith("---") else
                   "hunk" if stripped.startswith("@@") else "")
            out.append(f'<span class="{css}">{_e(line)}</span>\n' if css else f"{_e(line)}\n")
        out.append("</pre>")
    out.append("</div>")
    return "".join(out)
