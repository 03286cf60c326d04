"""The ``modelreg`` command line.

``--registry PATH`` goes before or after the command name (after wins when
both are given). Every command reads the registry except ``check``, which
reads only the files it is given and refuses ``--registry``.

Exit codes, the same for every command (docs/cli.md states the same rule):

- 0: everything asked for was done and passed.
- 1: a check failed: a model, checkpoint or file was examined and found
  wrong (a corrupt or wrong-architecture checkpoint, a failed parity, a stale
  or tampered artifact, a file given to ``check`` that is not a valid file of
  its kind, a pinned sha256 that ``init`` does not reproduce). The other
  models and files are still checked.
- 2: the command could not do what was asked: bad usage, a missing or
  invalid registry or registry entry, an unknown model or format name, a
  file named on the command line that cannot be read (missing, a folder) or
  whose kind ``check`` does not read, a missing optional dependency ``check``
  needs, a file that cannot be written (an unwritable folder, a full disk).
  2 wins when 1 applies too.
- 130: interrupted (Ctrl-C).

User errors print one message, never a traceback: a failed check in the
command's report (a ``FAIL`` line with its reasons), a refusal as one
``modelreg: error: ...`` line on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .errors import ArtifactError, ModelRegError, Problem, UsageError
from .plugins import BUILTIN_EXPORTERS, Exporter, available_exporters
from .paths import display_path
from .registry import Registry, load_registry

if TYPE_CHECKING:
    from .spec import ModelSpec

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors name the command and exit 2 (argparse's default too)."""

    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


_REGISTRY_HELP = "registry file (default: $MODELREG_REGISTRY, else the nearest registry.toml upward)"


def _parser() -> argparse.ArgumentParser:
    # --registry is accepted before the command name (the main parser) and after it
    # (each command's parser). The commands' copies default to SUPPRESS, so an absent
    # one does not overwrite a value given before the command.
    common = _Parser(add_help=False)
    common.add_argument("--registry", metavar="PATH", default=argparse.SUPPRESS, help=_REGISTRY_HELP)
    parser = _Parser(prog="modelreg", description="Build, check and export the models of a registry.toml.",
                     epilog="Exit codes: 0 all passed; 1 a check failed; 2 the command could not do what was asked "
                            "(bad usage, registry, input file or environment).")
    from ._version import __version__

    parser.add_argument("--version", action="version", version=f"modelreg {__version__}")
    parser.add_argument("--registry", metavar="PATH", default=None, help=_REGISTRY_HELP)
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
    p.add_argument("--no-latency", action="store_true",
                   help="measure no latency (reported as skipped): for commit hooks on a busy machine")
    p.add_argument("--jobs", "-j", type=_positive_int, default=1, metavar="N",
                   help="check N models at once (processes); latency is still measured one model at a time")
    p.add_argument("--report", nargs="?", const="", default=None, type=_report_path, metavar="OUT.html",
                   help="also write the HTML report of the run (default: models/validation_report.html; "
                        "with NAMEs or --shard, models/validation_report.partial.html)")
    p.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                   help="validate shard I of N (a CI job matrix): a deterministic share of the models, balanced by "
                        "the durations in the last results file; writes models/validation_results.shard-I-of-N.json "
                        "(`modelreg merge-results` combines them)")
    p.add_argument("--durations", metavar="RESULTS.json", default=None,
                   help="with --shard: the results file whose durations balance the shards "
                        "(default: models/validation_results.json, when it exists)")

    p = sub.add_parser("export", parents=[common], help="export models to their declared formats")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--format", action="append", dest="formats", metavar="F",
                   help="only this exporter (repeatable; default: every format the entry declares)")
    p.add_argument("--force", action="store_true", help="rewrite artifacts even when they are fresh")
    p.add_argument("--jobs", "-j", type=_positive_int, default=1, metavar="N", help="export N models at once (processes)")

    p = sub.add_parser("check", help="check exported files (RTNeural .json, ONNX .onnx, plugins' kinds) on their own")
    p.add_argument("files", nargs="+", metavar="FILE")
    # Accepted only to be refused with a clear message (see main), wherever it is written.
    p.add_argument("--registry", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    p = sub.add_parser("init", parents=[common], help="create missing checkpoints with seeded (untrained) weights")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0); the same seed gives bit-identical weights")
    p.add_argument("--force", action="store_true", help="overwrite existing checkpoints")

    _add_report_parser(sub, common)
    _add_import_parser(sub, common)
    _add_merge_parser(sub, common)
    _add_diff_parsers(sub, common)
    return parser


def _shard(text: str) -> Any:
    from .shards import SHARD_FORM, parse_shard

    try:
        return parse_shard(text)
    except UsageError as exc:  # argparse prints it as `argument --shard: ...`, exit 2
        raise argparse.ArgumentTypeError(f"{exc.problems[0].reason} (expected {SHARD_FORM}, found {text!r})") from None


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
    """Run the command line; returns the exit code (see the module docstring)."""
    parser = _parser()
    args = parser.parse_args(argv)
    from . import notices

    notices.show()  # a slow step (compiling RTNeural's runner) says so on stderr
    if args.command == "check" and args.registry is not None:
        parser.error("argument --registry: check reads only the files it is given and needs no registry")
    try:
        handler = {"list": _cmd_list, "show": _cmd_show, "validate": _cmd_validate, "init": _cmd_init,
                   "export": _cmd_export, "check": _cmd_check, "report": _cmd_report,
                   "import": _cmd_import, "merge-results": _cmd_merge_results, "diff": _cmd_diff,
                   "check-version": _cmd_check_version}[args.command]
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
        for name in registry.names:  # file order, invalid entries included: a list must not hide them
            spec = registry.get(name)
            if spec is None:
                count = len(registry.invalid[name])
                rows.append([name, "INVALID", "-", f"{_counted(count, 'problem')} (below)", "-", "-"])
                continue
            layers = ", ".join(f"{l.type} {l.units}" for l in spec.layers)
            rows.append([name, f"{spec.params:,}", f"{spec.in_features} -> {spec.out_features}", layers,
                         "yes" if spec.is_stateful else "no", ", ".join(spec.exports) or "-"])
        if len(rows) > 1:
            _table(rows, sys.stdout)
        else:
            print(f"{display_path(registry.path)}: no models")
    return _report_invalid(registry)


def _report_invalid(registry: Registry) -> int:
    for problem in registry.problems:
        print(f"modelreg: error: {problem}", file=sys.stderr)
    return EXIT_USAGE if registry.invalid else EXIT_OK


def _spec_json(registry: Registry, name: str) -> dict[str, Any]:
    spec = registry[name]
    # An audio-rate entry's target may be derived (no latency_ms in the entry): said here, per block.
    audio = {"block_ms": spec.block_ms, "latency_target_ms": spec.latency_ms} if spec.is_audio_rate else {}
    return {
        **spec.entry,
        "checkpoint_path": str(spec.checkpoint),
        "checkpoint_exists": spec.checkpoint.is_file(),
        "stateful": spec.is_stateful,
        **audio,
    }


def _cmd_show(args: argparse.Namespace) -> int:
    registry = load_registry(args.registry, strict=False)
    spec = registry[args.name]
    if args.json:
        print(json.dumps(_spec_json(registry, args.name), indent=2))
        return EXIT_OK
    print(f"{spec.name}: {spec.description}")
    print(f"  input        {list(spec.input_shape)} ({spec.dtype})"
          + (f", values in [{spec.input_range[0]:g}, {spec.input_range[1]:g}]" if spec.input_range else ""))
    print(f"  output       {list(spec.output_shape)}")
    print(f"  params       {spec.params:,}")
    resets = "reset() to the resting state" if spec.reset == "rest" else "reset() to zeros"
    print(f"  stateful     {f'yes (one frame per call, {resets})' if spec.is_stateful else 'no'}")
    if spec.rest_input is not None:
        rest = spec.rest_frame
        same = all(value == rest[0] for value in rest)
        print(f"  rest input   {f'{rest[0]:g} on every feature' if same else ', '.join(f'{v:g}' for v in rest)}")
    if spec.sample_rate is not None and spec.block_size is not None and spec.block_ms is not None:
        from .latency import ms_text
        from .spec import audio_rate_text

        print(f"  audio rate   {audio_rate_text(spec.sample_rate, spec.block_size)} ({ms_text(spec.block_ms)} each), "
              "one frame per sample")
        target = ("the block's duration" if spec.target_is_block
                  else f"the entry's latency_ms; a block lasts {ms_text(spec.block_ms)}")
        print(f"  latency      {spec.latency_stat} <= {spec.latency_ms:.4g} ms per block ({target})")
    else:
        print(f"  latency      {spec.latency_stat} <= {spec.latency_ms:g} ms")
    exists = "" if spec.checkpoint.is_file() else "  (missing: run `modelreg init`)"
    print(f"  checkpoint   {display_path(spec.checkpoint)}{exists}")
    print(f"  sha256       {spec.sha256 or '(not pinned)'}")
    print(f"  exports      {', '.join(spec.exports) or '-'}")
    if spec.tags:
        print(f"  tags         {', '.join(spec.tags)}")
    print("  layers")
    from .spec import layer_label, layer_params, layer_rows

    # A residual block's paths follow it, indented: [3].layers[0], [3].skip[0]...
    for depth, where, layer, size in layer_rows(spec.layers, spec.in_features):
        print(f"    {'  ' * depth}{where} {layer_label(layer, size)}  ({layer_params(layer, size):,} params)")
    return EXIT_OK


def _status_line(report: Any) -> str:
    mark = "ok  " if report.ok else "FAIL"
    total = len(report.checks)
    line = f"{mark} {report.name}: {report.passed}/{total} checks passed{_skipped_note(report)} ({report.seconds:.2f} s)"
    # Checks failing for one reason (a C++ toolchain that does not work fails all of its
    # checks alike) are listed together: the reason once, not once per check.
    by_message: dict[str, list[str]] = {}
    for failure in report.failures:
        by_message.setdefault(failure.message, []).append(failure.name)
    for message, names in by_message.items():
        line += f"\n       {', '.join(names)}: {_indented(message)}"
    return line


def _indented(text: str, indent: str = "         ") -> str:
    """A multi-line message kept under its FAIL block."""
    return text.replace("\n", "\n" + indent)


def _cmd_validate(args: argparse.Namespace) -> int:
    from .validation import validate_all

    registry = load_registry(args.registry, strict=False)
    out = sys.stderr if args.json else sys.stdout
    write = not args.no_write and (not args.names or args.shard is not None)
    plan = None
    if args.durations is not None and args.shard is None:
        raise UsageError.at("--durations balances shards: it needs --shard I/N", expected="--shard I/N with --durations")
    if args.shard is not None:
        if args.names:
            raise UsageError.at("--shard splits the whole registry: give model names or --shard, not both",
                                expected="no model names with --shard", found=" ".join(args.names))
        plan = _plan_shard(registry, args.shard, args.durations, out)

    def progress(report: Any) -> None:
        print(_status_line(report), file=out, flush=True)

    report = validate_all(registry, names=args.names or None, write=write, on_result=progress,
                          latency_seconds=args.latency_seconds, jobs=args.jobs, latency=not args.no_latency,
                          shard=plan)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        rows = [["model", "params", "latency", "C++ dynamic latency", "C++ dynamic parity", "target", "checks"]]
        for name, model in report.models.items():
            spec = registry.get(name)
            rows.append([
                name,
                f"{spec.params:,}" if spec is not None else "?",
                _latency_cell(model.get("latency"), spec, digits=3),
                *_cpp_cells(model, spec),
                _target_cell(spec),
                f"{model.passed}/{len(model.checks)}" + ("" if model.ok else " FAIL") + _skipped_note(model, short=True),
            ])
        print(file=out)
        _table(rows, out)
        _print_engine_table(report, registry, out)
        _print_realtime_table(report, out)
        _print_skips(report, out)
        if write and plan is not None:
            from .shards import shard_results_path
            from .validation import results_path

            print(f"\nresults: {display_path(shard_results_path(registry, plan.shard))} (partial: shard "
                  f"{plan.shard}; `modelreg merge-results` combines the shards into "
                  f"{display_path(results_path(registry))})", file=out)
        elif write:
            from .validation import results_path

            print(f"\nresults: {display_path(results_path(registry))}", file=out)
    if args.report is not None:
        _write_validate_report(args.report, report, registry, out, partial=bool(args.names) or plan is not None,
                               shard=None if plan is None else str(plan.shard))
    for warning in report.warnings:
        print(f"modelreg: warning: {warning}", file=sys.stderr)
    if report.problems:
        # A model's own problems (an invalid entry) were printed in its FAIL block; say
        # each problem once, and only the ones no model's block showed.
        in_report = set(report.models)
        for problem in report.problems:
            if problem.model not in in_report:
                print(f"modelreg: error: {problem}", file=sys.stderr)
        in_blocks = list(dict.fromkeys(p.model for p in report.problems if p.model is not None and p.model in in_report))
        if in_blocks:  # why the exit code is 2, pointing at the blocks above
            print(f"modelreg: error: {display_path(registry.path)}: the registry has problems in "
                  f"{', '.join(in_blocks)} (printed above, under FAIL)", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK if report.ok else EXIT_FAILED


def _latency_cell(check: Any, spec: Any, *, digits: int) -> str:
    """A latency check's figure for the entry's statistic; its status when it has none
    (a check that failed before measuring, e.g. a C++ toolchain that does not work).
    A block timing (an audio-rate model) reads ``p99 0.423 ms/blk 152x RT``."""
    if check is None:
        return "-"
    value = check.figures.get(f"{spec.latency_stat}_ms") if spec is not None else None
    if not isinstance(value, (int, float)):
        return check.status
    failed = "" if check.status != "fail" else " FAIL"
    if "block_size" in check.figures:
        from .latency import ms_text, rtf_text

        rtf = check.figures.get("rtf")
        factor = f" {rtf_text(rtf)} RT" if isinstance(rtf, (int, float)) else ""
        return f"{spec.latency_stat} {ms_text(value)}/blk{factor}{failed}"
    return f"{spec.latency_stat} {value:.{digits}f} ms{failed}"


def _target_cell(spec: Any) -> str:
    """The entry's latency target in the validate table: per block for an audio-rate model."""
    if spec is None:
        return "-"
    if spec.is_audio_rate:
        from .latency import ms_text

        return f"{ms_text(spec.latency_ms) if spec.target_is_block else f'{spec.latency_ms:g} ms'}/blk"
    return f"{spec.latency_ms:g} ms"


def _cpp_cells(model: Any, spec: Any) -> list[str]:
    """The cells of RTNeural's C++ dynamic model (parseJson) in the validate table."""
    parity = model.get("rtneural.dynamic_parity")
    parity_cell = "-"
    if parity is not None:
        error = parity.figures.get("max_abs_error")
        parity_cell = (f"{error:.2g}" + ("" if parity.ok else " FAIL") if isinstance(error, (int, float))
                       else parity.status)
    return [_latency_cell(model.get("rtneural.dynamic_latency"), spec, digits=4), parity_cell]


def engine_table_rows(report: Any, registry: Any) -> list[list[str]]:
    """The rows (header first) of the engine comparison of the audio-rate models in ``report``:
    per engine, its parity against torch (max abs error) and its time per block with the real-time
    factor at the median block and at the entry's statistic. Only the header when no model is
    audio-rate."""
    from .audio import engine_comparison
    from .latency import ms_text, rtf_text

    found = [(name, row) for name, model in report.models.items()
             for row in engine_comparison(model.checks, audio_rate=_audio_rate(registry.get(name)))]
    stats = {row.stat for _, row in found if row.stat}
    stat = stats.pop() if len(stats) == 1 else "stat"  # the entries' statistic, when they share one
    rows = [["model", "engine", "parity (max abs error)", f"block p50 / {stat}", f"real time (p50 / {stat})", "judged"]]
    for name, row in found:
        if row.parity_status == "reference":
            parity = "reference"
        elif row.max_abs_error is not None:
            parity = f"{row.max_abs_error:.2g}" + ("" if row.parity_status == "pass" else " FAIL")
        else:
            parity = row.parity_status or "-"
        if row.stat_ms is not None and row.p50_ms is not None:
            block = f"{ms_text(row.p50_ms)} / {ms_text(row.stat_ms)}" + ("" if row.stat == stat else f" ({row.stat})")
            speed = (f"{rtf_text(row.rtf_p50) if row.rtf_p50 else '-'} / "
                     f"{rtf_text(row.rtf) if row.rtf else '-'}" + (" FAIL" if row.latency_status == "fail" else ""))
        else:
            block = speed = row.latency_status
        judged = "-" if row.judged is None else ("yes" if row.judged else "no (Python)")
        rows.append([name, row.engine, parity, block, speed, judged])
    return rows


def _audio_rate(spec: Any) -> bool | None:
    return spec.is_audio_rate if spec is not None else None


def _print_engine_table(report: Any, registry: Any, out: TextIO) -> None:
    """One model, every engine: the audio-rate models' parity and real-time factor per engine."""
    rows = engine_table_rows(report, registry)
    if len(rows) > 1:
        print("\nEngines (audio-rate models: parity against torch, real-time factor at the entry's rate and block)",
              file=out)
        _table(rows, out)


def _print_realtime_table(report: Any, out: TextIO) -> None:
    """What a C++ host needs to know, per model, when RTNeural C++ ran: load time of the header,
    heap calls on the audio thread, RealtimeSanitizer's verdict, the silent tail."""
    rows = [["model", "header load", "allocations (dynamic / header)", "RealtimeSanitizer", "silent tail",
             "click after reset (zeros / rest)"]]
    for name, model in report.models.items():
        parity, header = model.get("rtneural-cpp.parity"), model.get("rtneural-cpp.realtime")
        dynamic, tail = model.get("rtneural.dynamic_realtime"), model.get("rtneural-cpp.denormals")
        ran = [c for c in (parity, header, dynamic, tail) if c is not None and c.status != "skip"]
        if not ran:
            continue
        load = parity.figures.get("load_ms") if parity is not None else None
        weights = parity.figures.get("weights", "") if parity is not None else ""
        load_cell = f"{load:.3g} ms ({weights})" if isinstance(load, (int, float)) else "-"

        def count(check: Any) -> str:
            value = check.figures.get("allocations") if check is not None else None
            return str(value) if isinstance(value, int) else (check.status if check is not None else "-")

        sanitizer = sorted({c.figures.get("rtsan") for c in (dynamic, header) if c is not None and c.figures.get("rtsan")})
        tail_cell = "-"
        if tail is not None and isinstance(tail.figures.get("tail_slowdown"), (int, float)):
            tail_cell = (f"x{tail.figures['tail_slowdown']:.2f}, {tail.figures.get('subnormal_outputs', 0)} subnormal"
                         + ("" if tail.ok else " FAIL"))
        elif tail is not None:
            tail_cell = tail.status
        rows.append([name, load_cell, f"{count(dynamic)} / {count(header)}", ", ".join(sanitizer) or "-", tail_cell,
                     _click_cell(model)])
    if len(rows) > 1:
        print("\nC++ on the audio thread (RTNeural)", file=out)
        _table(rows, out)


def _click_cell(model: Any) -> str:
    """The jump of the first output after a reset, on the rest input: after zeroing the state, and
    after restoring the resting state (the header's, else torch's figure); "-" for stateless models."""
    header, torch = model.get("rtneural-cpp.rest"), model.get("state.rest")
    figures = [c.figures for c in (header, torch) if c is not None and c.status != "skip"]
    if not figures or not isinstance(figures[0].get("click_zero"), (int, float)) or figures[0].get("behaviour") == "stateless":
        return "-"
    rest = next((f["click_rest"] for f in figures if isinstance(f.get("click_rest"), (int, float))), None)
    verdict = "" if all(c is None or c.status != "fail" for c in (header, torch)) else " FAIL"
    return f"{figures[0]['click_zero']:.2g} / " + (f"{rest:.2g}" if rest is not None else "-") + verdict


def _skipped_note(model: Any, *, short: bool = False) -> str:
    """How many of a model's checks were skipped (``, 3 skipped``): a count of passes alone
    would hide them. Checks not run because an earlier one failed are not counted: the
    failure says why."""
    count = sum(check.status == "skip" and not check.message.startswith("not run:") for check in model.checks)
    if not count:
        return ""
    return f" ({count} skipped)" if short else f", {count} skipped"


def _print_skips(report: Any, out: TextIO) -> None:
    """Why checks were skipped, once per reason with the checks and models it concerns (never
    silent, never one line per model). Skips following a failure are explained by the failure."""
    reasons: dict[str, tuple[dict[str, None], set[str]]] = {}
    for name, model in report.models.items():
        for check in model.checks:
            if check.status == "skip" and not check.message.startswith("not run:"):
                checks, models = reasons.setdefault(check.message, ({}, set()))
                checks[check.name] = None
                models.add(name)
    for reason, (checks, models) in reasons.items():
        print(f"\nchecks skipped ({_counted(len(models), 'model')}: {', '.join(checks)}): {_indented(reason, '  ')}",
              file=out)


def _cmd_init(args: argparse.Namespace) -> int:
    from .checkpoint import init_checkpoint

    registry = load_registry(args.registry, strict=False)
    names = args.names or list(registry)
    status = _report_invalid(registry) if not args.names else EXIT_OK
    for name in names:
        result = init_checkpoint(registry[name], seed=args.seed, force=args.force)
        line = f"{result.action:7} {display_path(result.path)}  sha256 {result.sha256}"
        if result.backup is not None:
            line += f"\n        the previous checkpoint is kept as {display_path(result.backup)}"
        if result.misfit is not None:
            reasons = "\n".join(f"          {p}" for p in result.misfit.problems)
            line += f"\n        the kept checkpoint does not fit models.{name}'s architecture:\n{reasons}"
            # What to do depends on what is wrong: `init --force` only when the shapes do not fit.
            if result.misfit.hint is not None:
                line += f"\n        hint: {result.misfit.hint}"
            status = max(status, EXIT_FAILED)
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
    if report.artifacts or report.invalid:  # a run that tried nothing has only its errors to say
        invalid = f", {_counted(len(report.invalid), 'model')} not exported (invalid entry)" if report.invalid else ""
        print(f"\n{written} written, {fresh} fresh, {failed} failed{invalid}")
    for warning in report.warnings:
        print(f"modelreg: warning: {warning}", file=sys.stderr)
    for problem in report.problems:
        print(f"modelreg: error: {problem}", file=sys.stderr)
    if report.problems:
        return EXIT_USAGE
    return EXIT_FAILED if failed else EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    # The exporters that can read each file suffix; built-ins first, then by name.
    readers: dict[str, list[Exporter]] = {}
    exporters = available_exporters()
    for name in sorted(exporters, key=lambda n: (n not in BUILTIN_EXPORTERS, n)):
        suffix = exporters[name].suffix
        if suffix:
            readers.setdefault(suffix.lower(), []).append(exporters[name])
    status = EXIT_OK
    for name in args.files:
        path = Path(name)
        try:
            _require_readable(path, name)
            candidates = readers.get(path.suffix.lower())
            if path.suffix.lower() == ".json" and ".nam" in readers and _is_nam(path):
                candidates = readers[".nam"]  # a NAM model saved as .json: read by content
            if not candidates:
                raise UsageError.at(f"not a kind of file `modelreg check` reads: {_kind_of(path)}", file=name,
                                    expected=_readable_kinds(readers))
            failures: list[tuple[Exporter, list[Problem]]] = []
            recorded = _recorded_problems(path, name)
            for exporter in candidates:  # one in practice; when plugins share a suffix, one that accepts the file suffices
                problems, detail = _check_file(exporter, path, name)
                problems += recorded
                if not problems:
                    print(f"ok   {name}: {detail}")
                    break
                failures.append((exporter, problems))
            else:
                count = sum(len(problems) for _, problems in failures)
                tried = f" (checked as {', '.join(e.name for e, _ in failures)})" if len(failures) > 1 else ""
                print(f"FAIL {name}: {_counted(count, 'problem')}{tried}")
                for _, problems in failures:
                    for problem in problems:
                        print(f"       {problem}")
                status = max(status, EXIT_FAILED)
        except ModelRegError as exc:  # the file could not be checked at all
            _print_error(exc)
            status = EXIT_USAGE
    return status


def _is_nam(path: Path) -> bool:
    from .nam.importing import is_nam_document

    return is_nam_document(path)


def _recorded_problems(path: Path, name: str) -> list[Problem]:
    """A file ``modelreg export`` recorded in a registry.lock must still be the file it wrote:
    ``check`` catches a hand-edited export as ``validate`` does (both read the nearest lock)."""
    from .atomic import sha256_file
    from .exporting import lock_record, tampered_reason

    found = lock_record(path)
    if found is None:
        return []
    lock, model, fmt, record = found
    digest = sha256_file(path)
    if record.get("sha256") == digest:
        return []
    return [Problem(tampered_reason(model), file=name, model=model,
                    expected=f"the {fmt} artifact recorded in {display_path(lock)} (sha256 {record.get('sha256')})",
                    found=f"sha256 {digest}")]


def _require_readable(path: Path, name: str) -> None:
    """A file named on the command line that cannot be read is a usage error (exit 2), whatever its kind."""
    if path.is_dir():
        raise UsageError.at("expected a file, found a directory", file=name)
    if path.exists() and not path.is_file():
        raise UsageError.at("expected a regular file, found a special file (a device, socket or pipe)", file=name)
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise UsageError.at("file not found", file=name) from None
    except OSError as exc:
        raise UsageError.at(f"cannot read the file: {exc.strerror or exc}", file=name) from None


def _readable_kinds(readers: dict[str, list[Exporter]]) -> str:
    kinds = [f"{suffix} ({', '.join(e.name for e in found)})" for suffix, found in sorted(readers.items())]
    if not kinds:
        return "an installed exporter that checks files"
    # "a, b or c": one "or", however many exporters there are.
    listed = kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} or {kinds[-1]}"
    return f"a file ending in {listed}"


def _kind_of(path: Path) -> str:
    """What a file that no exporter reads probably is, so the message can say where it belongs."""
    from .exporting import LOCK_FILENAME

    suffix = path.suffix.lower()
    if path.name == LOCK_FILENAME:
        return "it is modelreg's registry.lock (hashes of the exported artifacts; `modelreg validate` checks them)"
    if suffix == ".toml":
        return "it looks like a registry (`modelreg validate --registry FILE` checks one)"
    if suffix in (".pt", ".pth"):
        return "it looks like a PyTorch checkpoint (`modelreg validate` checks a checkpoint against its registry entry)"
    if suffix == ".safetensors":
        return "it looks like a safetensors checkpoint (`modelreg validate` checks a checkpoint against its registry entry)"
    if re.search(r"\.pth?\.bak-\d{8}T\d{6}Z(-\d+)?$", path.name):
        return ("it is a checkpoint that `modelreg init --force` replaced, kept as a backup (rename it back "
                "to its .pt name to use it again)")
    return f"no exporter reads files ending in {suffix!r}" if suffix else "a file name without a suffix"


def _check_file(exporter: Exporter, path: Path, name: str) -> tuple[list[Problem], str]:
    """The problems of one file read by ``exporter``, and a description for the ``ok`` line."""
    try:
        problems = exporter.check_file(path)
    except ModelRegError:
        raise
    except Exception as exc:  # a plugin's bug: the file was not checked
        raise UsageError.at(f"the {exporter.name!r} exporter failed to check the file: {type(exc).__name__}: {exc}",
                            file=name) from None
    return list(problems), exporter.describe_file(path) if not problems else ""


# ---------------------------------------------------------------- report (HTML)


def _add_report_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("report", parents=[common], help="write an HTML report (charts) of the last validation run")
    p.add_argument("--results", metavar="FILE",
                   help="validation results to show (default: models/validation_results.json beside the registry)")
    p.add_argument("-o", "--output", type=_html_path, metavar="OUT.html",
                   help="where to write the page (default: validation_report.html beside the results file)")
    p.add_argument("--diff", nargs="?", const="HEAD", default=None, metavar="BASE",
                   help="add a section: what changed since git revision BASE (default HEAD), as `modelreg diff` says")
    p.add_argument("--diff-against", metavar="PATH", help="add that section against another registry file")


def _html_path(text: str) -> str:
    if text and not text.lower().endswith((".html", ".htm")):
        raise argparse.ArgumentTypeError(f"expected a file name ending in .html, found {text!r}")
    return text


def _report_path(text: str) -> str:
    # `validate --report NAME` would otherwise write the report to a file called NAME.
    try:
        return _html_path(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (model names go before --report)") from None


def _cmd_report(args: argparse.Namespace) -> int:
    from .html_report import REPORT_FILENAME, load_results, registry_for_results, write_report
    from .validation import results_path

    registry: Registry | None
    note = None
    if args.results is not None:
        results = Path(args.results)
        document = load_results(results)
        if args.registry is not None:
            registry = load_registry(args.registry, strict=False)
        else:  # layers come from the registry that made the results, when it is still there
            registry, note = registry_for_results(document)
    else:
        registry = load_registry(args.registry, strict=False)
        results = results_path(registry)
        document = load_results(results)
    out = Path(args.output) if args.output else results.parent / REPORT_FILENAME
    diff = None
    if args.diff is not None or args.diff_against is not None:
        diff, _, _ = _diff_document(argparse.Namespace(registry=args.registry, base=args.diff, against=args.diff_against,
                                                       base_results=None), drift=True)
    write_report(out, document, registry, registry_note=note, diff=diff)
    models = document["models"]
    passed = sum(bool(m["ok"]) for m in models.values())
    print(f"wrote {display_path(out)} ({_counted(len(models), 'model')}, {passed} passed)")
    if note is not None:
        print(f"modelreg: note: {note}", file=sys.stderr)
    for problem in (diff or {}).get("problems", []):  # a model the diff section could not compare
        print(f"modelreg: error: {problem}", file=sys.stderr)
    return EXIT_USAGE if diff is not None and diff["problems"] else EXIT_OK


def _write_validate_report(target: str, report: Any, registry: Registry, out: TextIO, partial: bool = False,
                           shard: str | None = None) -> None:
    from .html_report import PARTIAL_REPORT_FILENAME, REPORT_FILENAME, write_report
    from .validation import results_path

    # A run of named models must not replace the whole registry's report (the results file is
    # protected the same way): unless given a path, its page goes beside it, named as partial.
    full = results_path(registry).parent / REPORT_FILENAME
    if target:
        path = Path(target)
    else:
        path = full.with_name(PARTIAL_REPORT_FILENAME) if partial else full
    write_report(path, report.to_json(), registry)
    what = ""
    if partial:
        models = ", ".join(report.models) if len(report.models) <= 4 else _counted(len(report.models), "model")
        if shard is not None:
            models = f"shard {shard}, {_counted(len(report.models), 'model')}"
        kept = f"; {display_path(full)} is written by a full run" if not target else ""
        what = f" (partial: {models}{kept})"
    print(f"report: {display_path(path)}{what}", file=out)


# ---------------------------------------------------------------- import (an RTNeural file -> entry + checkpoint)


def _print_imported_entry(spec: ModelSpec, sha256: str) -> None:
    """What every import says of the entry it wrote: its layers, parameters and checkpoint hash."""
    from .spec import layer_label

    size, stack = spec.in_features, []
    for layer in spec.layers:
        stack.append(layer_label(layer, size))
        size = layer.units
    print(f"  layers      {'; '.join(stack)}")
    print(f"  params      {spec.params:,}")
    print(f"  sha256      {sha256}")


def _print_import_end(name: str, notes: Sequence[str], backup: Path | None) -> None:
    """What every import says last: its notes, the checkpoint it kept, the next command."""
    for note in notes:
        print(f"  note        {note}")
    if backup is not None:
        print(f"  backup      the checkpoint it replaced is kept as {display_path(backup)}")
    # The entry declares exports that do not exist yet: validate would fail on them first.
    print(f"  next        modelreg export {name}, then modelreg validate {name}")


def _not_imported(file: str, exc: ArtifactError) -> int:
    """An import whose proof failed: what failed, and that nothing was written (exit 1)."""
    print(f"FAIL {file}: not imported, nothing written", file=sys.stdout)
    for problem in exc.problems:
        print(f"       {problem}")
    return EXIT_FAILED

def _add_import_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("import", parents=[common],
                       help="adopt an RTNeural model file or a NAM .nam file as a registry entry plus a checkpoint "
                            "(proven first)")
    p.add_argument("file", metavar="FILE.json|FILE.nam")
    p.add_argument("--name", help="model name (default: the file name without .json / .nam)")
    p.add_argument("--latency-ms", type=_positive_ms, default=None, metavar="MS",
                   help="the entry's latency target in ms (default 10; a .nam file with a sample rate: the block's "
                        "duration)")
    p.add_argument("--exports", type=_export_names, default=None, metavar="F[,F...]",
                   help="the entry's exports (default rtneural,onnx; .nam: nam,rtneural,onnx)")
    p.add_argument("--block-size", type=int, default=None, metavar="N",
                   help="a .nam file with a sample rate: the entry's block_size (default 64)")
    p.add_argument("--input-range", type=_finite, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="the values the host feeds the model (the entry's input_range); the proof stays within them")
    p.add_argument("--drop-zero-biases", action="store_true",
                   help="import a layer whose bias is all zeros as bias = false (the file cannot tell a bias-free "
                        "layer from a zero bias; default: keep the zeros as a bias)")
    p.add_argument("--force", action="store_true", help="overwrite an existing checkpoint file models/NAME.pt")


def _counted(count: int, noun: str) -> str:
    """``1 model``, ``3 models``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number, found {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, found {text!r}")
    return value


def _positive_ms(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of milliseconds > 0, found {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of milliseconds > 0, found {text!r}")
    return value


def _export_names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected exporter names separated by commas, found {text!r}")
    return names


def _cmd_import(args: argparse.Namespace) -> int:
    """Exit 1 when the file is no valid RTNeural model or the import does not reproduce it
    (a file examined and found wrong); 2 for everything that stops the command (docs/cli.md)."""
    from .nam.importing import is_nam_document
    from .rtneural.importing import DEFAULT_EXPORTS, DEFAULT_LATENCY_MS, import_rtneural

    _require_readable(Path(args.file), args.file)
    if is_nam_document(Path(args.file)):
        return _import_nam(args)
    if args.block_size is not None:
        raise UsageError.at("--block-size is for .nam files (an RTNeural file's entry has no sample rate)",
                            file=args.file, key="--block-size")
    try:
        result = import_rtneural(args.file, args.registry, name=args.name, force=args.force,
                                 latency_ms=DEFAULT_LATENCY_MS if args.latency_ms is None else args.latency_ms,
                                 exports=DEFAULT_EXPORTS if args.exports is None else args.exports,
                                 input_range=None if args.input_range is None else tuple(args.input_range),
                                 drop_zero_biases=args.drop_zero_biases)
    except ArtifactError as exc:
        return _not_imported(args.file, exc)
    weights = result.weights
    print(f"imported {args.file} as models.{result.name} -> {display_path(result.registry)}, "
          f"{display_path(result.checkpoint)}")
    _print_imported_entry(result.spec, result.sha256)
    print(f"  parity      numpy reference runtime: {result.parity.summary}; "
          f"64-frame stream max abs error {result.parity.cases['stream_64']:.3g}")
    cpp = result.cpp_parity
    print(f"  C++ parity  {'skipped: ' + cpp.skipped if cpp.skipped else 'RTNeural C++ loader: ' + cpp.summary}")
    zero = f"; {len(weights.zero_filled)} arrays not in the file written as zeros" if weights.zero_filled else ""
    print(f"  weights     re-export: {weights.arrays} arrays, {weights.values:,} float32 values bit-identical "
          f"to the file{zero}")
    _print_import_end(result.name, result.notes, result.backup)
    return EXIT_OK


def _import_nam(args: argparse.Namespace) -> int:
    """``modelreg import FILE.nam``: exit codes as for RTNeural files."""
    from .nam.importing import DEFAULT_BLOCK, import_nam

    for flag, given in (("--input-range", args.input_range is not None),
                        ("--drop-zero-biases", args.drop_zero_biases)):
        if given:
            raise UsageError.at(f"{flag} is for RTNeural files, not .nam files", file=args.file, key=flag)
    try:
        result = import_nam(args.file, args.registry, name=args.name, force=args.force, latency_ms=args.latency_ms,
                            exports=args.exports, block_size=DEFAULT_BLOCK if args.block_size is None else args.block_size)
    except ArtifactError as exc:
        return _not_imported(args.file, exc)
    again = result.reexport
    print(f"imported {args.file} (NAM {result.architecture}) as models.{result.name} -> "
          f"{display_path(result.registry)}, {display_path(result.checkpoint)}")
    _print_imported_entry(result.spec, result.sha256)
    print(f"  parity      NAM's engine (the original file): {result.parity.summary}; 4,096-sample stream max abs "
          f"error {result.parity.cases['stream_4096']:.3g}")
    states = (f"; {again.state_values} stored initial-state values = the resting state on zeros (max difference "
              f"{again.state_max_diff:.3g})" if again.state_values else "")
    print(f"  re-export   nam: config equal, {again.values:,} float32 weights bit-identical to the file{states}")
    _print_import_end(result.name, result.notes, result.backup)
    return EXIT_OK


# ---------------------------------------------------------------- shards (validate --shard, merge-results)


def _plan_shard(registry: Registry, shard: Any, durations: str | None, out: TextIO) -> Any:
    """The shard's plan, said before the run: how many models, and what balanced them."""
    from .shards import plan_shard
    from .validation import results_path

    plan = plan_shard(registry, shard, durations)
    source = Path(durations) if durations is not None else results_path(registry)
    if plan.balanced_by == "durations":
        how = f"balanced by the durations in {display_path(source)}"
    elif plan.note is not None:
        how = "balanced by model count"
    elif source.exists():
        how = f"balanced by model count ({display_path(source)} holds none of the registry's models)"
    else:
        how = f"balanced by model count (no {display_path(source)} yet)"
    print(f"shard {plan.shard}: {_counted(len(plan.models), 'model')} of {len(registry.names)}, {how}", file=out)
    if plan.note is not None:
        print(f"modelreg: warning: {plan.note}", file=sys.stderr)
    return plan


def _json_path(text: str) -> str:
    if not text.lower().endswith(".json"):
        raise argparse.ArgumentTypeError(f"expected a file name ending in .json, found {text!r}")
    return text


def _add_merge_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("merge-results", parents=[common],
                       help="combine the partial results of every `validate --shard I/N` into the one results file")
    p.add_argument("files", nargs="+", metavar="SHARD.json",
                   help="the partial results of shards 1..N (models/validation_results.shard-I-of-N.json)")
    p.add_argument("-o", "--output", type=_json_path, default=None, metavar="OUT.json",
                   help="where to write the merged results (default: models/validation_results.json beside the registry)")
    p.add_argument("--report", nargs="?", const="", default=None, type=_html_path, metavar="OUT.html",
                   help="also write the HTML report of the merged results (default: validation_report.html beside them)")


def _cmd_merge_results(args: argparse.Namespace) -> int:
    """Exit 2 when the files are refused (nothing is written) or the registry has problems; 1 when
    a model failed in its shard; 0 when every model passed: the verdict of the whole run."""
    from .atomic import atomic_write_text
    from .report import CheckResult, ModelReport
    from .merging import merge_results
    from .validation import _check_results_path, results_path

    registry = load_registry(args.registry, strict=False)
    merged = merge_results(args.files, registry)
    if args.output is not None:
        target = Path(args.output)
        if target.is_dir():
            raise UsageError.at("expected a file to write the merged results to, found a directory",
                                file=display_path(target))
    else:
        target = results_path(registry)
        _check_results_path(registry)
    document = merged.document
    try:
        atomic_write_text(target, json.dumps(document, indent=2, allow_nan=False) + "\n")
    except OSError as exc:  # unwritable, disk full: the old results file is kept (atomic write)
        from .exporting import write_error

        raise write_error(exc, target, "the merged results") from None
    failed = []
    for name, model in document["models"].items():
        if not model["ok"]:
            checks = [CheckResult(c["name"], c["status"], c["message"], c["figures"]) for c in model["checks"]]
            report = ModelReport(name, checks, model["seconds"])
            print(_status_line(report))
            failed.append(name)
    models = len(document["models"])
    verdict = f"{models - len(failed)} passed" + (f", {len(failed)} failed" if failed else "")
    print(f"merged {_counted(merged.count, 'shard')} ({_counted(models, 'model')}: {verdict}) -> {display_path(target)}")
    if args.report is not None:
        from .html_report import REPORT_FILENAME, write_report

        page = Path(args.report) if args.report else target.parent / REPORT_FILENAME
        write_report(page, document, registry)
        print(f"report: {display_path(page)}")
    for warning in document["warnings"]:
        print(f"modelreg: warning: {warning}", file=sys.stderr)
    if document["problems"]:
        # As validate: each problem once; an invalid entry's problems were printed in its FAIL block.
        shown = {name: "\n".join(c["message"] for c in document["models"][name]["checks"]) for name in failed}
        in_blocks: list[str] = []
        for problem in document["problems"]:
            holder = next((name for name, text in shown.items() if problem in text), None)
            if holder is None:
                print(f"modelreg: error: {problem}", file=sys.stderr)
            elif holder not in in_blocks:
                in_blocks.append(holder)
        if in_blocks:
            print(f"modelreg: error: {display_path(registry.path)}: the registry has problems in "
                  f"{', '.join(in_blocks)} (printed above, under FAIL)", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK if document["ok"] else EXIT_FAILED


# ---------------------------------------------------------------- diff, check-version (the registry's history)


def _add_diff_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    for command, helptext in (("diff", "compare the registry with a git revision or another registry file"),
                              ("check-version", "check each entry's declared version bump against a git revision")):
        p = sub.add_parser(command, parents=[common], help=helptext)
        p.add_argument("base", nargs="?", default=None, metavar="BASE",
                       help="git revision to compare with (default HEAD: the working tree against the last commit)")
        p.add_argument("--against", metavar="PATH", help="compare with another registry file instead of a revision")
        p.add_argument("--json", action="store_true", help="print the comparison as JSON (schemas/diff.schema.json)")
        p.add_argument("--base-results", metavar="FILE",
                       help="the base's validation results (latency), when they are not committed beside it")
        if command == "diff":
            p.add_argument("--fail-on", action="append", choices=["breaking", "version"], default=[],
                           help="exit 1 on an interface break (breaking) or a declared version bump too small (version)")
            p.add_argument("--max-drift", action="append", default=[], metavar="X|NAME=X",
                           help="exit 1 when a model's max |output drift| exceeds X (every compared model), or "
                                "NAME=X (one model; wins over X); repeatable")
            p.add_argument("--verbose", "-v", action="store_true", help="list unchanged tensors too")


def _diff_document(args: argparse.Namespace, *, drift: bool) -> tuple[dict[str, Any], Registry, list[str]]:
    """The comparison the diff commands print: (document, current registry, known model names)."""
    from .diff import diff_registries
    from .history import RESULTS, open_base, read_results

    if args.base is not None and args.against is not None:
        raise UsageError.at("give a revision or --against PATH, not both", key="BASE",
                            expected="BASE (a git revision) or --against PATH (a registry file)",
                            found=f"{args.base} and --against {args.against}")
    registry = load_registry(args.registry, strict=False)
    with open_base(registry.path, revision=args.base, against=args.against, base_results=args.base_results) as base:
        results_file = registry.root / RESULTS  # validation.results_path, without importing validation (numpy)
        current, note = read_results(results_file, display_path(results_file))
        document = diff_registries(registry, base, drift=drift, current_results=current, current_results_note=note,
                                   latency=drift)
        known = sorted(set(registry.names) | set(base.registry.names))
    return document, registry, known


def _cmd_diff(args: argparse.Namespace) -> int:
    """Exit 0 within the gates, 1 when one was crossed, 2 when the comparison could not be made (docs/history.md)."""
    from .diff import Gates, apply_gates, parse_max_drift, render_text

    overall, per_model = parse_max_drift(args.max_drift)  # before any work: a typo costs nothing
    document, registry, known = _diff_document(args, drift=True)
    crossed = apply_gates(document, Gates(frozenset(args.fail_on), overall, per_model), known,
                          display_path(registry.path))
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(render_text(document, verbose=args.verbose))
    for problem in document["problems"]:
        print(f"modelreg: error: {problem}", file=sys.stderr)
    if document["problems"]:
        return EXIT_USAGE
    return EXIT_FAILED if crossed else EXIT_OK


def _cmd_check_version(args: argparse.Namespace) -> int:
    """One line per model: its declared version against the bump its changes need; exit 1 when one is too small."""
    document, registry, _ = _diff_document(args, drift=False)
    status = EXIT_OK
    if args.json:
        print(json.dumps(document, indent=2))
    for name, model in document["models"].items():
        version = model["version"]
        if version is None:
            line = f"-    {name}: {model['status']}" + (": " + "; ".join(model["problems"]) if model["problems"] else "")
        elif not version["ok"]:
            line = f"FAIL {name}: {version['message']}"
            status = EXIT_FAILED
        else:
            line = f"ok   {name}: {version['message']}"
        if not args.json:
            print(line)
    for problem in document["problems"]:
        print(f"modelreg: error: {problem}", file=sys.stderr)
    return EXIT_USAGE if document["problems"] else status
