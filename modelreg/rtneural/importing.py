"""``modelreg import``: adopt an existing RTNeural model file as a registry entry and a checkpoint.

The file (from RTNeural's Keras exporter, written by hand, by another tool or
by modelreg) is checked as ``modelreg check`` checks it, its layers are read
by their kinds (:func:`modelreg.rtneural.format.from_rtneural`, weights in
PyTorch's layout), and nothing is written until the import is proven:

- the torch module, loaded from the exact checkpoint bytes about to be
  written, matches the original file run in the numpy reference runtime
  (the edge cases and a 64-frame stream, the parity rule of exports), and
  in RTNeural's own C++ loader when that is configured;
- writing that checkpoint back to RTNeural JSON gives float32 weights
  bit-identical to the file's (each number of the file as RTNeural reads it:
  parsed as a double, then rounded to float32); weights the file leaves out
  (a dense layer without bias, imported as ``bias = false``) are written as
  zeros, which is what RTNeural's loader uses for them.

Biases: a dense layer without a bias array is imported as ``bias = false``
(the file says so). Otherwise a file holds a bias even for a bias-free layer
(zeros: RTNeural's loader reads one), so it cannot tell a bias-free layer from
one whose bias happens to be zero: those are imported with their (zero) bias
unless ``drop_zero_biases`` (``--drop-zero-biases``) asks to read an all-zero
bias as ``bias = false``; without it, the import notes each such layer.

Then the checkpoint (``models/NAME.pt``) and the registry are written
atomically; the entry is appended as text, so every byte of the existing
registry (comments, layout) is kept. What a registry entry cannot express is
refused with one message naming the file, the layer and the key.

Which layers can be read is up to the kinds (:mod:`modelreg.layers`); the one
thing done here is folding RTNeural's stand-alone ``activation`` layer into the
layer before it when that layer takes an ``activation`` and has none (RTNeural's
loader runs a layer's own activation exactly like a stand-alone activation
layer after it).
"""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ..adopting import Adopted, appended, entry_text, install_entry, prepare_target
from ..layers import LayerKind, kinds, rtneural_handler
from ..errors import ArtifactError, Problem, RegistryError, UsageError
from ..layers import activations as _activations
from ..paths import display_path
from ..registry import Registry, load_registry
from ..spec import LayerSpec, ModelSpec, count_params

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    import numpy as np

    from ..builder import RealtimeModel
    from ..plugins import Parity

__all__ = ["DEFAULT_EXPORTS", "DEFAULT_LATENCY_MS", "ImportResult", "WeightsMatch", "import_rtneural"]

#: What an imported entry declares unless told otherwise.
DEFAULT_LATENCY_MS = 10.0
DEFAULT_EXPORTS: tuple[str, ...] = ("rtneural", "onnx")



@attrs.frozen
class WeightsMatch:
    """How the re-exported weights compare with the original file's."""

    #: Weight arrays of the file, each compared bit for bit after the round trip.
    arrays: int
    #: float32 values in those arrays.
    values: int
    #: Arrays whose float32 bits differ (empty when the import is accepted).
    differing: tuple[str, ...]
    #: Arrays the file leaves out (e.g. a bias-free dense layer's bias) that the re-export writes, all zeros.
    zero_filled: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.differing


@attrs.frozen(kw_only=True)
class ImportResult(Adopted):
    """What :func:`import_rtneural` wrote and how it proved the import: :attr:`parity` in the numpy
    reference runtime (cases by name, incl. ``stream_64``), and besides it:"""

    #: The same against RTNeural's C++ loader; ``skipped`` says why when not configured.
    cpp_parity: Parity
    weights: WeightsMatch


# ---------------------------------------------------------------- reading the file


def _layer_kind_takes_activation(layer: Mapping[str, Any]) -> bool:
    handler = rtneural_handler(str(layer.get("type")))
    return isinstance(handler, LayerKind) and "activation" in handler.registry_keys


def _fold_activations(data: Mapping[str, Any], file: str) -> tuple[dict[str, Any], list[int], list[str]]:
    """The document with stand-alone activation layers folded into the layer before them.

    Returns the new document, for each of its layers the index it had in the
    file, and a note per fold. A stand-alone activation that cannot fold is
    kept when a registry kind reads ``activation`` layers, else refused.
    """
    out: list[dict[str, Any]] = []
    origin: list[int] = []
    notes: list[str] = []
    standalone_kind = isinstance(rtneural_handler("activation"), LayerKind)
    for i, layer in enumerate(data["layers"]):
        if layer["type"] != "activation":
            out.append(dict(layer))
            origin.append(i)
            continue
        name = layer.get("activation", "")
        previous = out[-1] if out else None
        if not name:  # RTNeural's loader adds nothing for it
            notes.append(f"layers[{i}]: a stand-alone activation layer without activation (a no-op) was left out")
            continue
        if (previous is not None and _layer_kind_takes_activation(previous) and not previous.get("activation")
                and name in _activations.RTNEURAL_NAMES):
            previous["activation"] = name
            notes.append(f"layers[{i}]: the stand-alone {name} activation layer became the activation of "
                         f"layers[{origin[-1]}] ({previous['type']}), as RTNeural's loader runs it")
            continue
        if standalone_kind:
            out.append(dict(layer))
            origin.append(i)
            continue
        if previous is None:
            why = "it is the first layer"
        elif not _layer_kind_takes_activation(previous):
            why = f"layers[{origin[-1]}] is {previous['type']!r}, which takes no activation"
        else:
            why = f"layers[{origin[-1]}] ({previous['type']}) has its own activation {previous.get('activation')!r}"
        raise UsageError.at(
            "cannot import a stand-alone activation layer here: a registry entry has no stand-alone activation "
            f"layer yet, and this one cannot become the previous layer's activation ({why})",
            file=file, key=f"layers[{i}].type",
            expected="an activation layer directly after a dense layer whose activation is \"\"",
            found=f"'activation' ({name})")
    return {**data, "layers": out}, origin, notes


def _read_source(path: Path, shown: str) -> tuple[dict[str, Any], Any]:
    """The checked document of the file and its numpy reference-runtime model."""
    from .runtime import _read_json, check_rtneural, load_rtneural

    data = _read_json(path, shown)
    problems = check_rtneural(data, file=shown)
    if problems:
        raise ArtifactError(*problems)
    assert isinstance(data, dict)
    return data, load_rtneural(data, file=shown)


def _convert(data: dict[str, Any], shown: str,
             drop_zero_biases: bool = False) -> tuple[int, list[LayerSpec], dict[str, np.ndarray], list[int], list[str]]:
    """(input size, layers, torch state dict, file index of each layer, notes)."""
    from .format import from_rtneural, zero_bias_layers

    folded, origin, notes = _fold_activations(data, shown)
    for i, layer in zip(origin, folded["layers"]):
        if not isinstance(rtneural_handler(layer["type"]), LayerKind):
            raise UsageError.at("this RTNeural layer type has no registry layer kind yet, so no registry entry can "
                                "hold it", file=shown, key=f"layers[{i}].type",
                                expected="one of " + ", ".join(t for k in kinds() for t in k.rtneural_types),
                                found=layer["type"])
    if not folded["layers"]:
        raise UsageError.at("nothing to import: the file has no layer a registry entry can hold", file=shown,
                            key="layers", expected="at least one layer with weights")
    in_size, specs, state = from_rtneural(folded, file=shown, drop_zero_biases=drop_zero_biases)
    for i, spec in zip(origin, specs):
        if data["layers"][i]["type"] != spec.type:  # e.g. time-distributed-dense
            notes.append(f"layers[{i}]: {data['layers'][i]['type']!r} is read as {spec.type!r} "
                         "(RTNeural runs both alike, one frame at a time)")
    for index in zero_bias_layers(folded, file=shown):  # a file cannot tell: say what was chosen
        if drop_zero_biases:
            notes.append(f"layers[{origin[index]}]: its bias is all zeros: imported as bias = false (as asked)")
        else:
            notes.append(f"layers[{origin[index]}]: its bias is all zeros, imported as a bias of zeros; "
                         "--drop-zero-biases (drop_zero_biases=True) imports it as bias = false")
    return in_size, specs, state, origin, notes


# ---------------------------------------------------------------- the proof


def _compare_weights(original: Mapping[str, Any], rewritten: Mapping[str, Any], origin: Sequence[int]) -> WeightsMatch:
    """Every weight array of the file against the re-export's, bit for bit (float32 as RTNeural reads them)."""
    import numpy as np

    def f32(value: Any) -> np.ndarray:
        return np.asarray(value, dtype=np.float64).astype(np.float32)

    arrays = values = 0
    differing: list[str] = []
    zero_filled: list[str] = []
    file_layers = original["layers"]
    for new_index, layer in enumerate(rewritten["layers"]):
        i = origin[new_index]
        old_weights = file_layers[i]["weights"]
        new_weights = layer["weights"]
        for j, new in enumerate(new_weights):
            key = f"layers[{i}].weights[{j}]"
            b = f32(new)
            if j >= len(old_weights):
                (zero_filled if not b.view(np.uint32).any() else differing).append(key)
                continue
            a = f32(old_weights[j])
            arrays += 1
            values += a.size
            if a.shape != b.shape or not np.array_equal(a.view(np.uint32), b.view(np.uint32)):
                differing.append(key)
        for j in range(len(new_weights), len(old_weights)):
            differing.append(f"layers[{i}].weights[{j}] (not written back)")
    return WeightsMatch(arrays, values, tuple(differing), tuple(zero_filled))


def _cpp_parity(spec: ModelSpec, module: RealtimeModel, source: Path, tolerance: float) -> Parity:
    """The original file in RTNeural's C++ loader against the module, or a skip saying what to set."""
    from . import cpp as rc
    from ..plugins import Parity

    try:
        toolchain = rc.find_toolchain(spec.settings, spec.registry_file)
    except rc.NotConfigured as exc:
        return Parity.skip(str(exc), tolerance)
    runner = rc.runner_for(toolchain)
    loaded = rc.load_checked(runner, source, sizes=(spec.in_features, spec.out_features))

    try:
        return rc.parity(runner, loaded, module, tolerance, with_stream=True, file=display_path(source))
    finally:
        runner.free(loaded)


# ---------------------------------------------------------------- import


def import_rtneural(
    path: str | os.PathLike[str],
    registry: Registry | str | os.PathLike[str] | None = None,
    *,
    name: str | None = None,
    latency_ms: float = DEFAULT_LATENCY_MS,
    exports: Sequence[str] = DEFAULT_EXPORTS,
    force: bool = False,
    input_range: tuple[float, float] | None = None,
    drop_zero_biases: bool = False,
) -> ImportResult:
    """Adopt the RTNeural model file ``path`` as entry ``name`` of ``registry``, with checkpoint ``models/NAME.pt``.

    ``registry`` is a :class:`Registry`, a registry file (created when it does
    not exist yet; its folder must exist) or None (``$MODELREG_REGISTRY``, else
    the nearest ``registry.toml`` upward). ``name`` defaults to the file's stem.
    The entry gets ``latency_ms``, ``exports``, the computed ``params`` and the
    checkpoint's ``sha256``, and ``input_range`` when given: ``(min, max)`` the
    host feeds, which the proof then stays within (a softmax classifier whose
    logits overflow RTNeural's softmax at +-1e6 imports with the range its host
    really uses). ``drop_zero_biases``: read a layer whose bias is all zeros (+0.0) as ``bias = false``
    (a file cannot tell a bias-free conv1d, conv2d, lstm or gru from a zero bias; by default
    the zeros are kept as a bias, and the result's notes name such layers). An existing entry of that name is refused (remove it first or
    choose another name); an existing checkpoint file is refused unless ``force``.

    Raises :class:`ArtifactError` when the file is no valid RTNeural model, or
    when the import does not reproduce it (parity or weights; nothing is
    written then), :class:`UsageError` for what a registry entry cannot
    express and for a taken name, :class:`RegistryError` for a registry that
    cannot be read, :class:`WriteError` when a file cannot be written (every
    file is then left as it was), :class:`ToolchainError` when RTNeural C++ is
    configured but unusable.
    """
    import numpy as np
    import orjson
    import torch

    from ..checks import DEFAULT_TOLERANCE
    from ..parity import compare_parity
    from .format import dumps_rtneural, to_rtneural

    source = Path(path)
    shown = display_path(source)
    target = prepare_target(source, registry, name=name, force=force, latency_ms=latency_ms, input_range=input_range)
    registry_file, registry_shown, name = target.registry_file, target.registry_shown, target.name
    old_bytes, settings, input_range = target.old_bytes, target.settings, target.input_range
    checkpoint_rel, checkpoint, existed = target.checkpoint_rel, target.checkpoint, target.existed

    # The file, checked, read by the kinds, torch layout.
    data, reference = _read_source(source, shown)
    in_size, specs, state, origin, notes = _convert(data, shown, drop_zero_biases)
    spec = ModelSpec(
        name=name, description=f"Imported from {source.name} (RTNeural model file) by modelreg import.",
        input_shape=(1, in_size), output_shape=(1, specs[-1].units), dtype="float32",
        params=count_params(specs, in_size), latency_ms=float(latency_ms), layers=tuple(specs),
        checkpoint=checkpoint, registry_file=registry_file.absolute(), exports=tuple(exports),
        input_range=input_range, settings=dict(settings),
    )
    module = spec.build()
    module.load_state_dict({key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in state.items()},
                           strict=True)
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    checkpoint_bytes = buffer.getvalue()
    import hashlib

    sha256 = hashlib.sha256(checkpoint_bytes).hexdigest()

    # The proof runs on the checkpoint bytes about to be written.
    saved = torch.load(io.BytesIO(checkpoint_bytes), weights_only=True)
    proven = spec.build()
    proven.load_state_dict(saved, strict=True)
    proven.eval()
    tolerance = DEFAULT_TOLERANCE

    def run(frames: Any) -> Any:
        reference.reset()
        return np.stack([reference.step(frames[:, t, :]) for t in range(frames.shape[1])], axis=1)

    # The 64-frame stream for stateless models too: an imported file gets every input we have.
    parity = compare_parity(proven, run, tolerance, with_stream=True)
    numpy_state = {key: value.detach().cpu().numpy() for key, value in saved.items()}
    rewritten = orjson.loads(dumps_rtneural(to_rtneural(list(specs), in_size, numpy_state)))
    weights = _compare_weights(data, rewritten, origin)
    problems: list[Problem] = []
    if not parity.ok:
        hint = ""
        if input_range is None and parity.nan_at_large_inputs:
            # RTNeural's own softmax overflows there too: the file cannot do better at such inputs.
            hint = ("; if the host feeds values in a bounded range, give it (--input-range MIN MAX) and the "
                    "model is proven on that range")
        problems.append(Problem(f"the imported torch model does not reproduce the file in the reference runtime: "
                                f"{parity.summary}{hint}", file=shown, model=name))
    if not weights.ok:
        problems.append(Problem("re-exporting the imported checkpoint does not give the file's float32 weights",
                                file=shown, model=name, key=weights.differing[0],
                                expected="bit-identical float32 values",
                                found=f"{len(weights.differing)} differing arrays: {', '.join(weights.differing[:4])}"))
    if problems:
        raise ArtifactError(*problems)
    cpp = _cpp_parity(spec, proven, source, tolerance)
    if not cpp.ok:
        raise ArtifactError.at(f"the imported torch model does not match the file in RTNeural's C++ loader: "
                               f"{cpp.summary}", file=shown, model=name)
    for key in weights.zero_filled:
        notes.append(f"{key}: not in the file (RTNeural uses zeros); the layer is imported without it, "
                     "and its export writes those zeros")

    # The registry entry, appended as text; checked by loading the result before anything is installed.
    entry = entry_text(name, spec.description, in_size, specs, latency_ms=latency_ms, exports=exports,
                        checkpoint=checkpoint_rel, sha256=sha256, input_range=input_range)
    new_bytes = appended(old_bytes, entry)
    backup = install_entry(registry_file, registry_shown, old_bytes, new_bytes, name, spec, checkpoint, checkpoint_bytes,
                      existed)
    final = load_registry(registry_file, strict=False)[name]
    return ImportResult(name=name, source=source, registry=registry_file, checkpoint=checkpoint, sha256=sha256,
                        spec=final, entry_text=entry, parity=parity, cpp_parity=cpp, weights=weights,
                        notes=tuple(notes), backup=backup)
