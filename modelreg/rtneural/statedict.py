"""``rtneural-torch``: RTNeural's PyTorch route, a state-dict JSON and a header that loads it.

Most PyTorch users of RTNeural save ``model.state_dict()`` as JSON and load it layer by
layer with ``RTNeural::torch_helpers`` in a struct they write by hand. This exporter
writes both halves for the registry entry:

- ``models/torch/NAME.json``: the module's state dict exactly as those helpers read it
  and as ``json.dump({k: v.tolist() ...})`` writes it (keys as torch names them,
  ``layers.0.weight``, ``layers.3.skip.0.weight``; tensors as nested lists in torch's
  layout; every float32 exactly). It is also a valid JSON checkpoint of the entry.
  Validated against ``schemas/rtneural-torch.schema.json`` and the entry's tensor
  names and shapes.
- ``models/cpp/NAME.torch.h``: the entry's RTNeural compile-time layers (a ``ModelT``,
  or for residual blocks the struct per block the ``rtneural-cpp`` header holds),
  with ``load(path)`` that checks every tensor's shape, then calls ``loadDense``,
  ``loadConv1D``, ``loadGRU``, ``loadLSTM`` (and batchnorm's and PReLU's setters, as
  RTNeural's own TCN test does). Written by :func:`modelreg.rtneural.header.render_header`
  (``form="torch"``): the same emitters as rtneural-cpp; an ``rtneural-cpp`` header of a
  model with blocks and ``cpp_weights = "json"`` is this very loader, reading this file.

Parity (``rtneural-torch.parity``) compiles the header against the configured RTNeural
checkout, loads the JSON file with it and compares with torch over the parity stream
(skipped, saying what to set, without RTNeural C++).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import Problem
from ..plugins import Exporter, Parity

if TYPE_CHECKING:
    from ..builder import RealtimeModel
    from ..report import CheckResult
    from ..spec import ModelSpec

__all__ = ["RTNeuralTorchExporter", "expected_tensors", "header_path"]

#: The exporter's name and version, as the header's first line names them.
#: 2: the header's Model derives from modelreg_rt::ModelAllocation (rtneural-cpp version 6: huge pages).
NAME = "rtneural-torch"
VERSION = "2"


def header_path(spec: ModelSpec) -> Path:
    """``models/cpp/NAME.torch.h``: beside the rtneural-cpp headers, so the one CMake target
    (``modelreg_models``, models/cpp/CMakeLists.txt) builds both."""
    return spec.registry_dir / "models" / "cpp" / f"{spec.name}.torch.h"


def header_namespace(spec: ModelSpec) -> str:
    """``modelreg_models::NAME_torch``: its own, so a host may include both headers of one entry."""
    from .header import cpp_identifier

    return f"modelreg_models::{cpp_identifier(spec.name)}_torch"


def render(spec: ModelSpec) -> str:
    """The text of ``models/cpp/NAME.torch.h`` (the architecture alone: the weights are the JSON's)."""
    from .header import cpp_identifier, render_header

    return render_header(spec, form="torch", writer=(NAME, VERSION), ident=f"{cpp_identifier(spec.name)}_torch",
                         json_path=f"models/torch/{spec.name}.json", honour_rest=False)


def expected_tensors(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Every tensor of the entry's torch module: name -> shape (built on torch's meta device: no weights)."""
    import torch

    from ..builder import build_module

    with torch.device("meta"):
        module = build_module(spec)
    return {key: tuple(tensor.shape) for key, tensor in module.state_dict().items()}


def _shape_of(value: Any) -> tuple[int, ...] | None:
    """The shape of (schema-valid) nested lists, or None when they are ragged."""
    if not isinstance(value, list):
        return ()
    shapes = {_shape_of(item) for item in value}
    if len(shapes) != 1 or None in shapes:
        return None
    inner = shapes.pop()
    assert inner is not None
    return (len(value), *inner)


def _shape_text(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return "ragged nested lists"
    return "a number" if not shape else f"shape [{', '.join(str(n) for n in shape)}]"


def file_problems(path: Path, shown: str, spec: ModelSpec | None = None) -> list[Problem]:
    """A state-dict JSON's problems: not JSON, the schema, and (given the entry) each tensor missing,
    left over or of another shape than the entry's module gives it."""
    import orjson

    from ..schemas import schema_problems

    model = spec.name if spec is not None else None
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        return [Problem(f"cannot read the file: {exc.strerror or exc}", file=shown, model=model)]
    except orjson.JSONDecodeError as exc:
        return [Problem(f"not valid JSON: {exc}", file=shown, model=model)]
    problems = schema_problems(data, "rtneural-torch", file=shown)
    if problems or spec is None:
        return [attrs.evolve(p, model=model) for p in problems]
    expected = expected_tensors(spec)
    found: list[Problem] = []
    for key, shape in expected.items():
        if key not in data:
            found.append(Problem("missing tensor", file=shown, model=model, key=key,
                                 expected=_shape_text(shape), found="no such key"))
            continue
        actual = _shape_of(data[key])
        if actual != shape:
            found.append(Problem(f"tensor {key} does not fit the registry entry", file=shown, model=model, key=key,
                                 expected=_shape_text(shape), found=_shape_text(actual)))
    for key in data:
        if key not in expected:
            found.append(Problem("a tensor the entry's module does not have", file=shown, model=model, key=key,
                                 expected=f"one of the entry's {len(expected)} tensors", found=repr(key)))
    return found


class RTNeuralTorchExporter(Exporter):
    """Writes ``models/torch/NAME.json`` (the state dict as torch_helpers read it) and
    ``models/cpp/NAME.torch.h`` (RTNeural compile-time layers loading it with torch_helpers)."""

    name = NAME
    runtime = "RTNeural C++ (torch_helpers, compile-time layers)"
    version = VERSION
    thread_safe = True
    schema = "rtneural-torch"
    # No suffix: ".json" is the rtneural exporter's; `modelreg check` on a state dict says what it is.
    suffix = None

    def session(self) -> contextlib.AbstractContextManager[None]:
        """One look at the RTNeural tree and one self-test per cached program for the whole run."""
        from .cpp import run_scope

        return run_scope()

    def artifact_path(self, spec: ModelSpec) -> Path:
        return spec.registry_dir / "models" / "torch" / f"{spec.name}.json"

    def export(self, spec: ModelSpec, module: RealtimeModel, path: Path) -> None:
        from ..atomic import atomic_write_text
        from .header import write_cmake, write_state_json

        write_state_json(spec, module, path)  # in place: the pipeline's temporary file
        # The header depends on the architecture alone: rewritten only when it differs.
        header = header_path(spec)
        text = render(spec)
        header.parent.mkdir(parents=True, exist_ok=True)
        try:
            current = header.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            current = None
        if current != text:
            atomic_write_text(header, text)
        write_cmake(header.parent)

    def check_artifact(self, spec: ModelSpec, path: Path) -> list[Problem]:
        from ..paths import display_path

        problems = file_problems(path, display_path(path), spec)
        header = header_path(spec)
        try:
            text = header.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = None
        if text != render(spec):
            what = "is missing" if text is None else "is not the one rtneural-torch writes for this entry"
            problems.append(Problem(f"the header that loads the state dict {what}: run "
                                    f"`modelreg export --force {spec.name}`", file=display_path(header),
                                    model=spec.name, expected="the header rtneural-torch writes for this entry",
                                    found="no file" if text is None else "another text"))
        return problems

    def check_file(self, path: Path) -> list[Problem]:
        """A state-dict JSON on its own: JSON, and the schema (tensor names and nested lists of numbers)."""
        from ..paths import display_path

        return file_problems(path, display_path(path))

    def describe_file(self, path: Path) -> str:
        import orjson

        data = orjson.loads(path.read_bytes())
        return f"PyTorch state dict as JSON (RTNeural torch_helpers), {len(data)} tensors"

    def extra_checks(self, spec: ModelSpec, module: RealtimeModel,
                     tolerance: float) -> list[tuple[str, Callable[[Path], CheckResult]]]:
        """``realtime``: ``reset()`` and ``forward()`` of the header's model, loaded from the state dict
        with torch_helpers, allocate nothing (the runner's counter; RealtimeSanitizer where a clang has
        it), as ``rtneural-cpp.realtime`` proves for the rtneural-cpp header."""
        from ..report import CheckResult
        from .cpp import NotConfigured, Runner, Sanitizer, header_runner, realtime_check, toolchain_for

        name = f"{NAME}.realtime"
        engine = "the torch_helpers header (state-dict JSON)"

        def realtime(path: Path) -> CheckResult:
            try:
                toolchain = toolchain_for(spec)
            except NotConfigured as exc:
                return CheckResult(name, "skip", str(exc))

            def runner(sanitizer: Sanitizer | None = None) -> Runner:
                return header_runner(toolchain, header_path(spec), header_namespace(spec), f"{spec.name}.torch",
                                     sanitizer=sanitizer)

            return realtime_check(name, spec, toolchain, engine, runner, path, runner)

        return [("realtime", realtime)]

    def verify(self, spec: ModelSpec, module: RealtimeModel, path: Path, tolerance: float) -> Parity:
        from .cpp import NotConfigured, header_runner, load_checked, parity, toolchain_for

        try:
            toolchain = toolchain_for(spec)
        except NotConfigured as exc:
            return Parity.skip(str(exc), tolerance)
        header = header_path(spec)
        with header_runner(toolchain, header, header_namespace(spec), f"{spec.name}.torch") as runner:
            loaded = load_checked(runner, path, model=spec.name, sizes=(spec.in_features, spec.out_features))
            result = parity(runner, loaded, module, tolerance, file=str(path))
            return attrs.evolve(result, details={"load_ms": loaded.load_ns / 1e6, "backend": toolchain.backend})
