"""The ``modelreg`` command line.

Exit codes: 0 everything passed; 1 a check failed; 2 bad usage, a bad
registry or a bad input file. User errors print one clear message, never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .errors import ModelRegError
from .registry import Registry, display_path, load_registry

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors name the command and exit 2 (argparse's default too)."""

    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--registry", metavar="PATH",
                        help="registry file (default: $MODELREG_REGISTRY, else the nearest registry.toml upward)")
    parser = _Parser(prog="modelreg", description="Build, check and export the models of a registry.toml.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"modelreg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("list", parents=[common], help="list the models of the registry")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("show", parents=[common], help="show one model's entry")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("validate", parents=[common], help="check models (all by default)")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--no-write", action="store_true",
                   help="do not write models/validation_results.json (it is written only when all models are validated)")
    p.add_argument("--latency-seconds", type=_positive_float, default=0.4, metavar="S",
                   help="time spent measuring each model's latency (default 0.4)")
    p.add_argument("--jobs", "-j", type=_positive_int, default=1, metavar="N",
                   help="check N models at once (processes); latency is still measured one model at a time")

    p = sub.add_parser("export", parents=[common], help="export models to their declared formats")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--format", action="append", dest="formats", metavar="F",
                   help="only this exporter (repeatable; default: every format the entry declares)")
    p.add_argument("--force", action="store_true", help="rewrite artifacts even when they are fresh")
    p.add_argument("--jobs", "-j", type=_positive_int, default=1, metavar="N", help="export N models at once (processes)")

    p = sub.add_parser("check", help="check exported files (RTNeural JSON) against the schema and format rules")
    p.add_argument("files", nargs="+", metavar="FILE")

    p = sub.add_parser("init", parents=[common], help="create missing checkpoints with seeded (untrained) weights")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0); the same seed gives bit-identical weights")
    p.add_argument("--force", action="store_true", help="overwrite existing checkpoints")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, found {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, found {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, found {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        handler = {"list": _cmd_list, "show": _cmd_show, "validate": _cmd_validate, "init": _cmd_init,
                   "export": _cmd_export, "check": _cmd_check}[args.command]
        return handler(args)
    except ModelRegError as exc:
        _print_error(exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("modelreg: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `modelreg list | head`
        return EXIT_OK
    except OSError as exc:
        # The environment (a full disk, a folder that is a file...) where no
        # ModelRegError was made for it: still one line naming the path, never a traceback.
        where = f"{display_path(Path(exc.filename))}: " if isinstance(exc.filename, str) and exc.filename else ""
        print(f"modelreg: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE


def _print_error(exc: ModelRegError, stream: TextIO | None = None) -> None:
    print(f"modelreg: error: {exc}", file=stream or sys.stderr)


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(), file=out)
        if index == 0:
            print("  ".join("-" * width for width in widths), file=out)


def _cmd_list(args: argparse.Namespace) -> int:
    registry = load_registry(args.registry, strict=False)
    if args.json:
        models = {name: _spec_json(registry, name) for name in registry}
        print(json.dumps({"registry": str(registry.path), "models": models,
                          "invalid": {n: [str(p) for p in ps] for n, ps in registry.invalid.items()}}, indent=2))
    else:
        rows = [["model", "params", "in -> out", "layers", "stateful", "exports"]]
        for name, spec in registry.items():
            layers = ", ".join(f"{l.type} {l.units}" for l in spec.layers)
            rows.append([name, f"{spec.params:,}", f"{spec.in_features} -> {spec.out_features}", layers,
                         "yes" if spec.is_stateful else "no", ", ".join(spec.exports) or "-"])
        if len(rows) > 1:
            _table(rows, sys.stdout)
        else:
            print(f"{display_path(registry.path)}: no valid models")
    return _report_invalid(registry)


def _report_invalid(registry: Registry) -> int:
    for problem in registry.problems:
        print(f"modelreg: error: {problem}", file=sys.stderr)
    return EXIT_USAGE if registry.invalid else EXIT_OK


def _spec_json(registry: Registry, name: str) -> dict[str, Any]:
    spec = registry[name]
    return {
        **spec.entry,
        "checkpoint_path": str(spec.checkpoint),
        "checkpoint_exists": spec.checkpoint.is_file(),
        "stateful": spec.is_stateful,
    }


def _cmd_show(args: argparse.Namespace) -> int:
    registry = load_registry(args.registry, strict=False)
    spec = registry[args.name]
    if args.json:
        print(json.dumps(_spec_json(registry, args.name), indent=2))
        return EXIT_OK
    print(f"{spec.name}: {spec.description}")
    print(f"  input        {list(spec.input_shape)} ({spec.dtype})")
    print(f"  output       {list(spec.output_shape)}")
    print(f"  params       {spec.params:,}")
    print(f"  stateful     {'yes (one frame per call, reset() to zeros)' if spec.is_stateful else 'no'}")
    print(f"  latency      {spec.latency_stat} <= {spec.latency_ms:g} ms")
    exists = "" if spec.checkpoint.is_file() else "  (missing: run `modelreg init`)"
    print(f"  checkpoint   {display_path(spec.checkpoint)}{exists}")
    print(f"  sha256       {spec.sha256 or '(not pinned)'}")
    print(f"  exports      {', '.join(spec.exports) or '-'}")
    if spec.tags:
        print(f"  tags         {', '.join(spec.tags)}")
    print("  layers")
    size = spec.in_features
    from .spec import layer_params

    for index, layer in enumerate(spec.layers):
        act = f" {layer.activation}" if layer.type == "dense" else ""
        print(f"    [{index}] {layer.type} {size} -> {layer.units}{act}  ({layer_params(layer, size):,} params)")
        size = layer.units
    return EXIT_OK


def _status_line(report: Any) -> str:
    mark = "ok  " if report.ok else "FAIL"
    total = len(report.checks)
    line = f"{mark} {report.name}: {report.passed}/{total} checks passed ({report.seconds:.2f} s)"
    for failure in report.failures:
        line += f"\n       {failure.name}: {failure.message}"
    return line


def _cmd_validate(args: argparse.Namespace) -> int:
    from .validation import validate_all

    registry = load_registry(args.registry, strict=False)
    out = sys.stderr if args.json else sys.stdout
    write = not args.no_write and not args.names

    def progress(report: Any) -> None:
        print(_status_line(report), file=out, flush=True)

    report = validate_all(registry, names=args.names or None, write=write, on_result=progress,
                          latency_seconds=args.latency_seconds, jobs=args.jobs)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        rows = [["model", "params", "latency", "C++ latency", "C++ parity", "target", "checks"]]
        for name, model in report.models.items():
            spec = registry.get(name)
            latency = model.get("latency")
            shown = "-"
            if latency is not None and latency.status in ("pass", "fail") and spec is not None:
                shown = f"{spec.latency_stat} {latency.figures[spec.latency_stat + '_ms']:.3f} ms"
            rows.append([
                name,
                f"{spec.params:,}" if spec is not None else "?",
                shown,
                *_cpp_cells(model, spec),
                f"{spec.latency_ms:g} ms" if spec is not None else "-",
                f"{model.passed}/{len(model.checks)}" + ("" if model.ok else " FAIL"),
            ])
        print(file=out)
        _table(rows, out)
        _print_cpp_skips(report, out)
        if write:
            from .validation import results_path

            print(f"\nresults: {display_path(results_path(registry))}", file=out)
    for warning in report.warnings:
        print(f"modelreg: warning: {warning}", file=sys.stderr)
    if report.problems:
        for problem in report.problems:
            print(f"modelreg: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK if report.ok else EXIT_FAILED


def _cpp_cells(model: Any, spec: Any) -> list[str]:
    """The RTNeural C++ latency and parity cells of the validate table."""
    latency, parity = model.get("rtneural.cpp_latency"), model.get("rtneural.cpp_parity")
    latency_cell = parity_cell = "-"
    if latency is not None and latency.status in ("pass", "fail") and spec is not None:
        latency_cell = f"{spec.latency_stat} {latency.figures[spec.latency_stat + '_ms']:.4f} ms"
    elif latency is not None:
        latency_cell = latency.status
    if parity is not None and parity.status in ("pass", "fail") and "max_abs_error" in parity.figures:
        parity_cell = f"{parity.figures['max_abs_error']:.2g}" + ("" if parity.ok else " FAIL")
    elif parity is not None:
        parity_cell = parity.status
    return [latency_cell, parity_cell]


def _print_cpp_skips(report: Any, out: TextIO) -> None:
    """Skipped C++ checks, once per reason (never silent, never one line per model)."""
    reasons: dict[str, set[str]] = {}
    for name, model in report.models.items():
        for check in model.checks:
            if check.status == "skip" and "cpp" in check.name and not check.message.startswith("not run:"):
                reasons.setdefault(check.message, set()).add(name)
    for reason, models in reasons.items():
        print(f"\nC++ checks skipped ({len(models)} models): {reason}", file=out)


def _cmd_init(args: argparse.Namespace) -> int:
    from .checkpoint import init_checkpoint

    registry = load_registry(args.registry, strict=False)
    names = args.names or list(registry)
    status = _report_invalid(registry) if not args.names else EXIT_OK
    for name in names:
        result = init_checkpoint(registry[name], seed=args.seed, force=args.force)
        line = f"{result.action:7} {display_path(result.path)}  sha256 {result.sha256}"
        if result.pin_ok is False:
            line += f"\n        pinned sha256 differs: set models.{name}.sha256 = \"{result.sha256}\" if these weights are intended"
            status = max(status, EXIT_FAILED)
        print(line)
    return status


def _cmd_export(args: argparse.Namespace) -> int:
    from .exporting import export_all

    registry = load_registry(args.registry, strict=False)

    def progress(result: Any) -> None:
        mark = {"written": "wrote", "fresh": "fresh", "failed": "FAIL "}[result.status]
        where = display_path(result.path) if result.path is not None else result.exporter
        print(f"{mark} {result.model} -> {where}  {result.message}" if result.status != "failed"
              else f"{mark} {result.model} ({result.exporter}): {result.message}", flush=True)

    report = export_all(registry, names=args.names or None, formats=args.formats, force=args.force,
                        on_result=progress, jobs=args.jobs)
    written = sum(a.status == "written" for a in report.artifacts)
    fresh = sum(a.status == "fresh" for a in report.artifacts)
    failed = sum(a.status == "failed" for a in report.artifacts)
    print(f"\n{written} written, {fresh} fresh, {failed} failed")
    for warning in report.warnings:
        print(f"modelreg: warning: {warning}", file=sys.stderr)
    for problem in report.problems:
        print(f"modelreg: error: {problem}", file=sys.stderr)
    if report.problems:
        return EXIT_USAGE
    return EXIT_FAILED if failed else EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    from .rtneural_runtime import load_rtneural

    status = EXIT_OK
    for name in args.files:
        try:
            model = load_rtneural(name, file=name)
        except ModelRegError as exc:
            _print_error(exc)
            status = EXIT_USAGE
            continue
        kind = "stateful" if model.is_stateful else "stateless"
        print(f"ok   {name}: {len(model.layers)} layers, {model.in_size} -> {model.out_size}, {kind}")
    return status
