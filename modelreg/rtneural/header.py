"""``rtneural-cpp``: a C++ header per model with its compile-time RTNeural type and a checked loader.

RTNeural recommends its compile-time API (``RTNeural::ModelT<...>``) for speed;
writing that type by hand is where layer sizes drift from the trained model,
and ``ModelT::parseJson`` then leaves mismatched layers at zero with only a
debug print. ``models/cpp/NAME.h`` spells the entry's exact type and a loader
that checks the RTNeural JSON file against it (layer types, sizes, activations,
every weight array's dimensions) before handing it to ``parseJson``, and throws
``std::runtime_error`` naming the file and layer on any mismatch.

The header depends only on the architecture; the weights come from the model's
RTNeural JSON (``models/NAME.json``) at run time. ``verify()`` compiles a test
program with the header (against the configured RTNeural checkout, see
:mod:`modelreg.rtneural.cpp`), loads an RTNeural file written from the same
module, and compares it with torch on the parity inputs. Without a configured
checkout the header is still written and its parity is reported as skipped.
"""

from __future__ import annotations

import contextlib
import math
import re
import tempfile
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from ..atomic import atomic_write_text
from ..errors import Problem
from ..layers.base import Leaf, LayerSpec, cpp_float, leaves, unstacked
from ..plugins import Exporter, Parity

if TYPE_CHECKING:
    from ..builder import RealtimeModel
    from ..report import CheckResult
    from ..rest import RestingState
    from ..spec import ModelSpec

__all__ = ["RTNeuralCppExporter", "cpp_namespace", "model_type", "render_header"]

_EIGEN_STACK_LIMIT = 131072  # Eigen's default EIGEN_STACK_ALLOCATION_LIMIT, in bytes
_MARKER = "// Written by modelreg's rtneural-cpp exporter"


def cpp_identifier(name: str) -> str:
    """A model name as a C++ identifier (``-`` becomes ``_``; a leading digit gets ``m_``)."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return f"m_{ident}" if ident[:1].isdigit() else ident


def cpp_namespace(spec: ModelSpec) -> str:
    """The namespace a model's header declares its type and loader in."""
    return f"modelreg_models::{cpp_identifier(spec.name)}"


def _layer_types(spec: ModelSpec) -> list[str]:
    types: list[str] = []
    size = spec.in_features
    for layer in spec.layers:
        types += layer.kind.cpp_types(layer, size)  # each kind knows its RTNeural compile-time types
        size = layer.units
    return types


def model_type(spec: ModelSpec) -> str:
    """The entry's ``RTNeural::ModelT<float, IN, OUT, ...>`` type."""
    inner = ",\n    ".join(_layer_types(spec))
    return f"RTNeural::ModelT<float, {spec.in_features}, {spec.out_features},\n    {inner}>"


def largest_matrix(spec: ModelSpec) -> tuple[int, str]:
    """Bytes of the largest layer's weights (what RTNeural's Eigen backend holds in fixed-size
    matrices for it), and which layer."""
    best = (0, "")
    # A residual block's layers, one by one; a stacked recurrent layer's too (one matrix set each).
    for leaf in unstacked(leaves(spec.layers, spec.in_features)):
        layer, size = leaf.layer, leaf.in_features
        elements = sum(math.prod(shape) for shape in layer.kind.rtneural_shapes(layer, size))
        if 4 * elements > best[0]:
            best = (4 * elements, f"{leaf.path} {layer.type} {size} -> {layer.units}")
    return best


def _layer_info(spec: ModelSpec) -> list[str]:
    """One ``LayerInfo`` initializer per RTNeural file layer (a stacked recurrent layer writes one per
    stacked layer): what the RTNeural file must declare for it."""
    rows = []
    for leaf in unstacked(leaves(spec.layers, spec.in_features)):
        layer, size = leaf.layer, leaf.in_features
        kind = layer.kind
        activation = kind.rtneural_activation(layer)
        shapes = kind.rtneural_shapes(layer, size)
        weights = ", ".join("{%d, {%s}}" % (len(shape), ", ".join(str(n) for n in shape)) for shape in shapes)
        keys = kind.rtneural_keys(layer)
        key_rows = ", ".join('{"%s", %d, %d}' % key for key in keys)
        rows.append('    {"%s", %d, %s, %d, {%s}, %d, {%s}}' % (kind.rtneural_types[0], layer.units,
                                                             "nullptr" if activation is None else f'"{activation}"',
                                                             len(shapes), weights, len(keys), key_rows))
    return rows


# The checking code shared by every header (guarded, so several headers can be included together).
_DETAIL = r'''
#ifndef MODELREG_RTNEURAL_CPP_DETAIL_V3
#define MODELREG_RTNEURAL_CPP_DETAIL_V3
namespace modelreg_rtneural_detail
{
/** One weights array: its number of dimensions and their sizes (outermost first). */
struct WeightInfo
{
    int ndim;
    int dims[4];
};

/** An integer key the loader checks the layer against (kernel_size, dilation...), read as it reads it. */
struct KeyInfo
{
    const char* name;
    int value;
    int missing; // what the loader assumes when the key is absent; 0: it must be present
};

/** One layer as the RTNeural JSON file must declare it (written by modelreg from the layer's kind). */
struct LayerInfo
{
    const char* type; // RTNeural's layer type
    int units; // the last entry of its "shape"
    const char* activation; // the activation the loader applies ("" is linear), or nullptr when it ignores it
    int n_weights;
    WeightInfo weights[4];
    int n_keys;
    KeyInfo keys[4];
};

[[noreturn]] inline void fail(const std::string& file, const std::string& where, const std::string& what)
{
    throw std::runtime_error(file + ": " + where + ": " + what);
}

inline long last_size(const nlohmann::json& shape)
{
    if(!shape.is_array() || shape.empty() || !shape.back().is_number_integer())
        return -1;
    return shape.back().get<long>();
}

inline void expect_numbers(const nlohmann::json& row, std::size_t n, const std::string& file, const std::string& where)
{
    if(!row.is_array() || row.size() != n)
        fail(file, where, "expected " + std::to_string(n) + " numbers, found "
                              + (row.is_array() ? std::to_string(row.size()) + " values" : std::string(row.type_name())));
    for(const auto& value : row)
        if(!value.is_number())
            fail(file, where, std::string("expected numbers, found a ") + value.type_name());
}

inline void expect_array(const nlohmann::json& a, const int* dims, int ndim, const std::string& file, const std::string& where)
{
    if(ndim == 1)
        return expect_numbers(a, static_cast<std::size_t>(dims[0]), file, where);
    const auto rows = static_cast<std::size_t>(dims[0]);
    if(!a.is_array() || a.size() != rows)
        fail(file, where, "expected " + std::to_string(rows) + " rows of " + std::to_string(dims[1]) + ", found "
                              + (a.is_array() ? std::to_string(a.size()) + " rows" : std::string(a.type_name())));
    for(std::size_t r = 0; r < rows; ++r)
        expect_array(a[r], dims + 1, ndim - 1, file, where + "[" + std::to_string(r) + "]");
}

/** Throws std::runtime_error unless `doc` declares exactly these layers with weights of these sizes. */
inline void check(const nlohmann::json& doc, int in_size, const LayerInfo* expected, std::size_t count, const std::string& file)
{
    if(!doc.is_object() || !doc.contains("in_shape") || !doc.contains("layers") || !doc["layers"].is_array())
        fail(file, "top level", "not an RTNeural model (expected an object with 'in_shape' and 'layers')");
    if(last_size(doc["in_shape"]) != in_size)
        fail(file, "in_shape", "expected " + std::to_string(in_size) + " inputs, found " + doc["in_shape"].dump());
    const auto& layers = doc["layers"];
    if(layers.size() != count)
        fail(file, "layers", "expected " + std::to_string(count) + " layers, found " + std::to_string(layers.size()));
    for(std::size_t i = 0; i < count; ++i)
    {
        const auto& l = layers[i];
        const auto& e = expected[i];
        const std::string at = "layers[" + std::to_string(i) + "]";
        const std::string type = l.is_object() && l.contains("type") && l["type"].is_string() ? l["type"].get<std::string>() : "?";
        if(type != e.type)
            fail(file, at + ".type", std::string("expected '") + e.type + "', found '" + type + "'");
        if(!l.contains("shape") || last_size(l["shape"]) != e.units)
            fail(file, at + ".shape", "expected " + std::to_string(e.units) + " units, found "
                                          + (l.contains("shape") ? l["shape"].dump() : std::string("none")));
        if(!l.contains("weights") || !l["weights"].is_array())
            fail(file, at + ".weights", "missing");
        const auto& w = l["weights"];
        if(e.activation != nullptr)
        {
            const std::string activation = l.contains("activation") && l["activation"].is_string() ? l["activation"].get<std::string>() : "";
            if(activation != e.activation)
                fail(file, at + ".activation", std::string("expected '") + e.activation + "', found '" + activation + "'");
        }
        if(w.size() != static_cast<std::size_t>(e.n_weights))
            fail(file, at + ".weights", "expected " + std::to_string(e.n_weights) + " arrays, found " + std::to_string(w.size()));
        for(int j = 0; j < e.n_weights; ++j)
            expect_array(w[j], e.weights[j].dims, e.weights[j].ndim, file, at + ".weights[" + std::to_string(j) + "]");
        for(int k = 0; k < e.n_keys; ++k)
        {
            const auto& key = e.keys[k];
            const std::string where = at + "." + key.name;
            long value = key.missing;
            if(l.contains(key.name))
            {
                // As the loader reads it: an array's last entry (.back()), or the number itself.
                const auto& v = l[key.name].is_array() && !l[key.name].empty() ? l[key.name].back() : l[key.name];
                value = v.is_number_integer() ? v.get<long>() : -1;
            }
            else if(key.missing == 0)
                fail(file, where, "missing (expected " + std::to_string(key.value) + ")");
            if(value != key.value)
                fail(file, where, "expected " + std::to_string(key.value) + ", found "
                                      + (l.contains(key.name) ? l[key.name].dump() : std::string("none (") + std::to_string(key.missing) + ")"));
        }
    }
}
} // namespace modelreg_rtneural_detail
#endif // MODELREG_RTNEURAL_CPP_DETAIL_V3
'''


#: The shared real-time helpers (no JSON): copied into every header, included by the C++ runner.
RT_HELPERS = Path(__file__).with_name("modelreg_rt.h")
# Embedded weights are written as string literals of this many bytes at most: every compiler takes
# them (MSVC refuses longer ones) and they compile ~10x faster than float initializer lists.
_CHUNK_BYTES = 32768
# Markers around the embedded data, so that a header's weights can be told from its code.
_DATA_BEGIN = "// ---- embedded weights begin"
_DATA_END = "// ---- embedded weights end"


def _eigen_guard(spec: ModelSpec) -> str:
    matrix_bytes, matrix_layer = largest_matrix(spec)
    if matrix_bytes <= _EIGEN_STACK_LIMIT:
        return ""
    return f'''
// Pitfall 1 (Eigen backend): {matrix_layer} holds a fixed-size matrix of {matrix_bytes} bytes, above
// Eigen's default stack allocation limit ({_EIGEN_STACK_LIMIT}), which fails to compile with
// OBJECT_ALLOCATED_ON_STACK_IS_TOO_BIG. Build every file that includes this header with
// -DEIGEN_STACK_ALLOCATION_LIMIT=0 (or a limit of at least {matrix_bytes}), and keep the model on the
// heap (make()): it is far too large for an audio thread's stack.
#if RTNEURAL_USE_EIGEN && EIGEN_STACK_ALLOCATION_LIMIT != 0 && EIGEN_STACK_ALLOCATION_LIMIT < {matrix_bytes}
#error "modelreg: {spec.name}: {matrix_layer} needs {matrix_bytes} bytes, above EIGEN_STACK_ALLOCATION_LIMIT: build with -DEIGEN_STACK_ALLOCATION_LIMIT=0"
#endif
'''


def weight_arrays(spec: ModelSpec, module: RealtimeModel) -> list[list[Any]]:
    """Per layer, its weight arrays exactly as the RTNeural JSON export writes them (float32, RTNeural layout)."""
    from .format import to_rtneural

    state = {key: tensor.detach().cpu().numpy() for key, tensor in module.state_dict().items()}
    if has_blocks(spec) or stride_period(spec) > 1:
        # Per plain layer of the blocks, depth first (the order the header's setters read them): each
        # kind writes what its RTNeural layer would hold, from its nested state-dict entries. A strided
        # conv1d too: no RTNeural JSON file holds one (to_rtneural refuses it), but its C++ layer does.
        from ..layers.base import StateReader

        reader = StateReader(state)
        return [list(leaf.layer.kind.to_rtneural(leaf.layer, leaf.in_features, reader, leaf.prefix)["weights"])
                for leaf in unstacked(leaves(spec.layers, spec.in_features))]
    return [list(layer["weights"]) for layer in to_rtneural(list(spec.layers), spec.in_features, state)["layers"]]


def _embedded(spec: ModelSpec, arrays: list[list[Any]]) -> tuple[str, str]:
    """The weights as chunks of little-endian float32 bytes, and the statements that set them."""
    import numpy as np

    data = [np.ascontiguousarray(a, dtype="<f4") for layer in arrays for a in layer]
    blob = b"".join(a.tobytes() for a in data)
    chunks = [blob[i:i + _CHUNK_BYTES] for i in range(0, len(blob), _CHUNK_BYTES)]
    lines = [_DATA_BEGIN, f"    // {len(blob) // 4} float32 values in {len(chunks)} chunks (RTNeural JSON order and layout)"]
    for index, chunk in enumerate(chunks):
        lines.append(f"    inline constexpr char kChunk{index}[] =")
        for row in range(0, len(chunk), 48):  # 48 bytes a line: ~200 columns
            lines.append('        "' + "".join(f"\\x{byte:02x}" for byte in chunk[row:row + 48]) + '"')
        lines[-1] += ";"
    table = ", ".join(f"{{kChunk{i}, {len(c)}}}" for i, c in enumerate(chunks))
    if chunks:
        # inline: one copy however many files include the header (C++17).
        lines.append(f"    inline constexpr modelreg_rt::Chunk kChunks[] = {{{table}}};")
    lines.append(_DATA_END)
    # The setters of each layer, as RTNeural's own JSON loader would call them.
    setters: list[str] = []
    for (leaf, target), layer_arrays in zip(_weight_targets(spec), arrays):
        layer, size = leaf.layer, leaf.in_features
        shapes = [tuple(np.asarray(array).shape) for array in layer_arrays]
        statements = layer.kind.cpp_set_weights(layer, size, target, "w", shapes)
        if statements:
            setters.append(f"        // {leaf.path} {layer.type} {size} -> {layer.units}")
            setters += [f"        {statement}" for statement in statements]
    total = len(blob) // 4
    body = "\n".join([f"        modelreg_rt::Weights w({'kChunks' if chunks else 'nullptr'}, {len(chunks)});", *setters,
                      f"        if(w.values_read() != {total})",
                      f'            throw std::logic_error("modelreg: {spec.name}: the loader read " + std::to_string(w.values_read())',
                      f'                                   + " of the {total} embedded weights");'])
    return "\n".join(lines), body


def _weight_targets(spec: ModelSpec) -> list[tuple[Leaf, str]]:
    """Each plain layer (each layer of a stack) with the C++ expression of its RTNeural compile-time
    object in ``model``."""
    if has_blocks(spec):
        return _compose(spec).targets
    found: list[tuple[Leaf, str]] = []
    index = 0
    for leaf in unstacked(leaves(spec.layers, spec.in_features)):
        found.append((leaf, f"model.template get<{index}>()"))
        index += len(leaf.layer.kind.cpp_types(leaf.layer, leaf.in_features))
    return found


# ---------------------------------------------------------------- weights from a state-dict JSON
#
# RTNeural's PyTorch route: the model's state dict as JSON (tensors as nested lists, named as torch
# names them), each layer loaded with torch_helpers.h (loadDense, loadConv1D, loadGRU, loadLSTM) or,
# where the helpers have none, its setters (batchnorm, PReLU). The helpers check no size (a tensor
# of another shape is read past its end), so the header checks every tensor's shape first.

# Added to _DETAIL (whose expect_array and fail it uses) by headers that read a state-dict JSON.
_TORCH_DETAIL = r"""
#ifndef MODELREG_RTNEURAL_TORCH_DETAIL_V1
#define MODELREG_RTNEURAL_TORCH_DETAIL_V1
namespace modelreg_rtneural_detail
{
/** One tensor of a PyTorch state dict as the loader reads it: its name and shape (outermost first). */
struct TensorInfo
{
    const char* name;
    int ndim;
    int dims[4];
};

/** Throws std::runtime_error unless `doc` holds every tensor with exactly its shape (other keys are ignored). */
inline void check_tensors(const nlohmann::json& doc, const TensorInfo* expected, std::size_t count, const std::string& file)
{
    if(!doc.is_object())
        fail(file, "top level", std::string("not a PyTorch state dict (expected an object of tensor names), found a ") + doc.type_name());
    if(doc.contains("in_shape") && doc.contains("layers"))
        fail(file, "top level", "an RTNeural model file (in_shape and layers), not a PyTorch state dict");
    for(std::size_t i = 0; i < count; ++i)
    {
        const auto& e = expected[i];
        if(!doc.contains(e.name))
            fail(file, e.name, "missing (a tensor the model loads)");
        expect_array(doc[e.name], e.dims, e.ndim, file, e.name);
    }
}
} // namespace modelreg_rtneural_detail
#endif // MODELREG_RTNEURAL_TORCH_DETAIL_V1
"""


def torch_route_problems(spec: ModelSpec) -> list[Problem]:
    """Layers that RTNeural's PyTorch route cannot load (no torch_helpers loader, no setter route in
    modelreg): one problem each, naming the layer's key."""
    from ..errors import ModelRegError
    from ..paths import display_path

    found = []
    for leaf in unstacked(leaves(spec.layers, spec.in_features)):
        try:
            leaf.layer.kind.torch_tensors(leaf.layer, leaf.in_features)
        except ModelRegError as exc:
            problem = exc.problems[0]
            found.append(Problem(f"{leaf.layer.type} layer: {problem.reason}", file=display_path(spec.registry_file),
                                 model=spec.name, key=f"models.{spec.name}.{leaf.path}", expected=problem.expected,
                                 found=f'type = "{leaf.layer.type}"'))
    return found


def write_state_json(spec: ModelSpec, module: RealtimeModel, path: Path) -> None:
    """``module``'s state dict as the JSON torch_helpers read (the ``"torch"`` form's weights file, and
    the ``rtneural-torch`` exporter's), at ``path`` (written in place). Layers without a torch route
    and non-finite weights (JSON has no NaN; orjson would write null) are refused."""
    import torch

    from ..checkpoint import state_dict_json
    from ..errors import ExportError

    problems = torch_route_problems(spec)
    if problems:
        raise ExportError(*problems)
    for key, tensor in module.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ExportError.at("weights must be finite numbers (JSON has no NaN or Inf)", model=spec.name,
                                 key=key, expected="finite float32 values", found="NaN or Inf")
    path.write_bytes(state_dict_json(module))


def torch_tensors(spec: ModelSpec) -> list[tuple[str, tuple[int, ...]]]:
    """Every tensor the header's state-dict loader reads: full state-dict name and shape, in load order."""
    return [(leaf.prefix + name, shape) for leaf in unstacked(leaves(spec.layers, spec.in_features))
            for name, shape in leaf.layer.kind.torch_tensors(leaf.layer, leaf.in_features)]


def _torch_loading(spec: ModelSpec) -> tuple[list[str], list[str]]:
    """The ``TensorInfo`` initializers of the tensors read, and the statements that load ``model`` from ``doc``."""
    rows = ['{"%s", %d, {%s}}' % (name, len(shape), ", ".join(str(n) for n in shape)) for name, shape in torch_tensors(spec)]
    statements: list[str] = []
    for leaf, target in _weight_targets(spec):
        layer, size = leaf.layer, leaf.in_features
        lines = layer.kind.cpp_load_torch(layer, size, target, "doc", leaf.prefix)
        if lines:
            statements.append(f"// {leaf.path} {layer.type} {size} -> {layer.units}")
            statements += lines
    return rows, statements


# ---------------------------------------------------------------- models with residual blocks
#
# ModelT holds a straight stack. A model with blocks is a struct of stages: each straight run of
# plain layers is one RTNeural::ModelT (which does the backend's work: Eigen maps, STL copies,
# aligned outputs), each block a generated struct holding its paths' stages and writing the
# block's output (the kind's cpp_combine: main + skip) to an aligned array of its own.


def has_blocks(spec: ModelSpec) -> bool:
    """Whether the entry holds a layer with paths of layers (a residual block): no ModelT can hold it."""
    return any(layer.kind.children(layer) for layer in spec.layers)


@attrs.define
class _Composed:
    """The C++ of a model with blocks: struct definitions (innermost first) and weight targets."""

    structs: list[str] = attrs.Factory(list)
    targets: list[tuple[Leaf, str]] = attrs.Factory(list)


def _compose(spec: ModelSpec) -> _Composed:
    composed = _Composed()
    members, out = _compose_path(composed, list(spec.layers), spec.in_features, "layers", "layers.", "s", "model.")
    lines = _struct_lines(
        f"/** {spec.name}: {spec.in_features} inputs -> {spec.out_features} outputs, stage by stage. */", "Net",
        [declaration for declaration, _ in members], [name for _, name in members],
        forward=("float forward(const float* input) noexcept", [*_chain(members, "input"), "return getOutputs()[0];"]),
        outputs=out, docs=("/** Puts every layer's state to zeros (RTNeural's reset of each stage). */",
                           "/** One frame (aligned to RTNEURAL_DEFAULT_ALIGNMENT); returns the first output. */",
                           f"/** The last frame's {spec.out_features} outputs (aligned). */"))
    composed.structs.append("\n".join(lines))
    return composed


def _struct_lines(title: str, name: str, declarations: list[str], stages: list[str], *,
                  forward: tuple[str, list[str]], outputs: str,
                  docs: tuple[str, str, str] | None = None) -> list[str]:
    """A stage struct (the model's ``Net`` or a block's): its members, ``reset()`` of every stage,
    ``forward()`` (``forward``: signature and body) and ``getOutputs()`` returning ``outputs``;
    ``docs``: the three methods' comments (the model's struct has them, a block's does not)."""
    reset_doc, forward_doc, outputs_doc = (f"    {doc}" for doc in docs) if docs else ("", "", "")

    def documented(doc: str, *rest: str) -> list[str]:
        return [doc, *rest] if doc else list(rest)

    signature, body = forward
    return [title, f"struct {name}", "{",
            *(f"    {declaration}" for declaration in declarations), "",
            *documented(reset_doc, "    void reset() noexcept", "    {"),
            *(f"        {stage}.reset();" for stage in stages), "    }", "",
            *documented(forward_doc, f"    {signature}", "    {"),
            *(f"        {line}" for line in body), "    }", "",
            *documented(outputs_doc, "    const float* getOutputs() const noexcept", "    {"),
            f"        return {outputs};", "    }", "};"]


def _chain(members: list[tuple[str, str]], ins: str) -> list[str]:
    """forward() calls of a path's stages, each fed the previous one's outputs."""
    calls = []
    for _, name in members:
        calls.append(f"{name}.forward({ins});")
        ins = f"{name}.getOutputs()"
    return calls


def _compose_path(composed: _Composed, layers: list[LayerSpec], in_features: int, path: str, prefix: str,
                  member: str, access: str) -> tuple[list[tuple[str, str]], str]:
    """The stages of one path: ``(declaration, member name)`` each, and the C++ expression of the
    path's output. ``path`` / ``prefix``: the layers' key path and state-dict prefix; ``member``:
    what the stages are called (``s``, ``layers``, ``skip``: ``s0``, ``s1``...); ``access``: how
    the load function reaches the struct holding them (``model.``, ``model.s2.``)."""
    members: list[tuple[str, str]] = []
    run: list[tuple[int, LayerSpec, int]] = []  # a straight run of plain layers: (index, layer, input size)

    def close_run() -> None:
        if not run:
            return
        name = f"{member}{len(members)}"
        types: list[str] = []
        for index, layer, size in run:
            for leaf in layer.kind.unstack(Leaf(layer, size, f"{path}[{index}]", f"{prefix}{index}.")):
                composed.targets.append((leaf, f"{access}{name}.template get<{len(types)}>()"))
                types += leaf.layer.kind.cpp_types(leaf.layer, leaf.in_features)
        first, last = run[0], run[-1]
        where = f"{path}[{first[0]}]" + (f" .. {path}[{last[0]}]" if len(run) > 1 else "")
        inner = ",\n        ".join(types)
        members.append((f"RTNeural::ModelT<float, {first[2]}, {last[1].units},\n        {inner}> {name}; // {where}",
                        name))
        run.clear()

    size = in_features
    for index, layer in enumerate(layers):
        paths = layer.kind.children(layer)
        if not paths:
            run.append((index, layer, size))
            size = layer.units
            continue
        close_run()
        name = f"{member}{len(members)}"
        struct = _compose_block(composed, layer, size, f"{path}[{index}]", f"{prefix}{index}.", f"{access}{name}.")
        members.append((f"{struct} {name}; // {path}[{index}]", name))
        size = layer.units
    close_run()
    return members, f"{members[-1][1]}.getOutputs()"


def _compose_block(composed: _Composed, layer: LayerSpec, in_features: int, path: str, prefix: str,
                   access: str) -> str:
    """The struct of one block (its nested blocks' structs first); returns its name."""
    stages: list[tuple[str, str]] = []
    outputs: dict[str, str] = {}
    calls: list[str] = []
    for key, inner in layer.kind.children(layer):
        if not inner:
            continue  # no layers: the kind's cpp_combine knows what the path passes (the identity)
        members, out = _compose_path(composed, list(inner), in_features, f"{path}.{key}", f"{prefix}{key}.", key,
                                     access)
        stages += members
        calls += _chain(members, "ins")
        outputs[key] = out
    combine = layer.kind.cpp_combine(layer, in_features, "outs", outputs, "ins")
    name = f"Block{len(composed.structs)}"
    lines = _struct_lines(
        f"/** {path}: {layer.type} {in_features} -> {layer.units}. */", name,
        [declaration for declaration, _ in stages]
        + [f"alignas(RTNEURAL_DEFAULT_ALIGNMENT) float outs[{layer.units}] = {{}};"],
        [member for _, member in stages], forward=("void forward(const float* ins) noexcept", calls + combine),
        outputs="outs")
    composed.structs.append("\n".join(lines))
    return name


def rest_warmup(resting: RestingState, period: int = 1) -> int:
    """Frames of rest input the header's reset() runs to bring a zeroed model to its resting state:
    what float32 took in torch, plus a margin (past rest, more frames change nothing), rounded up
    to a multiple of ``period`` (:func:`stride_period`: the strided layers end where the resting
    state has them, about to compute)."""
    frames = resting.float32_frames or resting.frames or 0
    return -(-(frames + max(16, frames // 4)) // period) * period


def _rest_section(spec: ModelSpec, resting: RestingState) -> str:
    values = ", ".join(cpp_float(v) for v in spec.rest_frame)
    return (f"    // reset = \"rest\": reset() zeroes the state, then runs this many frames of the rest input: the\n"
            f"    // state comes to where it rests ({resting.frames} frames to rest, {resting.float32_frames} in float32).\n"
            f"    inline constexpr int kRestFrames = {rest_warmup(resting, stride_period(spec))};\n"
            f"    inline constexpr Frame kRestInput = {{{{{values}}}}};")


def needs_rest(spec: ModelSpec) -> bool:
    """Whether the header's reset() restores a resting state (a stateful entry with ``reset = "rest"``)."""
    return spec.reset == "rest" and spec.is_stateful


def weights_form(spec: ModelSpec) -> str:
    """Where an rtneural-cpp header's weights come from: ``"embedded"``; ``"json"`` (the RTNeural
    JSON file, read by ``parseJson``); or, for ``cpp_weights = "json"`` on a model RTNeural JSON
    cannot hold (residual blocks; a strided conv1d, whose stride parseJson does not read),
    ``"torch"``: the state-dict JSON the ``rtneural-torch`` exporter writes, read with
    ``torch_helpers`` (whose ``loadConv1D`` loads a ``StridedConv1DT`` like a ``Conv1DT``)."""
    if spec.cpp_weights == "embedded":
        return "embedded"
    return "torch" if has_blocks(spec) or stride_period(spec) > 1 else "json"


def render_header(spec: ModelSpec, arrays: list[list[Any]] | None = None, resting: RestingState | None = None, *,
                  form: str | None = None, writer: tuple[str, str] | None = None, ident: str | None = None,
                  json_path: str | None = None, honour_rest: bool = True) -> str:
    """The text of ``models/cpp/NAME.h`` for ``spec``.

    ``arrays`` (:func:`weight_arrays`): the weights, needed by entries with ``cpp_weights = "embedded"``;
    ``resting`` (the module's ``resting_state()``): needed by stateful entries with ``reset = "rest"``.
    Without both, the JSON forms depend on the architecture alone. ``form``: where the weights come
    from (:func:`weights_form`, the default); ``writer``: the exporter named in the first line, and
    its version (rtneural-cpp's by default; rtneural-torch writes the ``"torch"`` form); ``ident``:
    the namespace inside ``modelreg_models`` (the entry's name); ``json_path``: where the weights
    file lives, as the header's comments name it; ``honour_rest``: False writes a reset() that
    zeroes whatever the entry's ``reset`` says (rtneural-torch: its header needs no checkpoint).
    """
    ident = ident or cpp_identifier(spec.name)
    form = weights_form(spec) if form is None else form
    embedded = form == "embedded"
    blocks = has_blocks(spec)
    writer_name, writer_version = writer or ("rtneural-cpp", RTNeuralCppExporter.version)
    if form == "torch":
        problems = torch_route_problems(spec)
        if problems:
            from ..errors import ExportError

            raise ExportError(*problems)
    if embedded and arrays is None:
        raise ValueError(f"{spec.name}: an embedded-weights header needs the model's weight arrays")
    rests = needs_rest(spec) and honour_rest
    if rests and resting is None:
        raise ValueError(f"{spec.name}: a header that resets to the resting state needs the resting state")
    rest_data = ""
    if resting is not None and rests:
        section = _rest_section(spec, resting)
        # Numbers of the checkpoint: inside the data markers, which check_artifact leaves to verify().
        rest_data = section + "\n" if embedded else f"{_DATA_BEGIN}\n{section}\n{_DATA_END}\n"
    summary = ", ".join(
        f"{layer.type} {layer.units}" + (f" {layer.activation}" if layer.type == "dense" else "")
        + (f" x{layer.option('num_layers')}" if layer.option("num_layers") else "") for layer in spec.layers
    )
    helpers = RT_HELPERS.read_text(encoding="utf-8")
    if embedded:
        assert arrays is not None
        source = "are compiled into this header (no file, no JSON parser)"
        usage = f'''//     auto model = modelreg_models::{ident}::load();     // allocates: call it off the audio thread
//     modelreg_models::{ident}::reset(*model);           // before the stream, and whenever it restarts'''
        includes = "#include <memory>\n#include <stdexcept>\n#include <string>\n#include <vector>"
        data, setters = _embedded(spec, arrays)
        if rests:
            data = data.replace(_DATA_END, rest_data + _DATA_END)
        loading = f'''
    namespace weights
    {{
{data}
    }} // namespace weights

    /** Sets the embedded weights through RTNeural's own setters, as its JSON loader would (allocates:
     *  call it off the audio thread). */
    inline void load(Model& model)
    {{
        using namespace weights;
{setters}
        model.reset();
    }}

    /** make() + load(): a ready model. */
    inline std::unique_ptr<Model> load()
    {{
        auto model = make();
        load(*model);
        return model;
    }}
'''
        detail = ""
    else:
        if form == "torch":
            source = (f"come from the model's PyTorch state dict as JSON ({json_path or f'models/torch/{spec.name}.json'}, written by\n"
                      "// the rtneural-torch exporter) at run time, loaded layer by layer with RTNeural's torch_helpers")
            what = "the PyTorch state-dict JSON"
            rows, statements = _torch_loading(spec)
            table = ",\n    ".join(rows)
            detail = _DETAIL + _TORCH_DETAIL
            declaration = (f"""
    /** Every tensor load() reads: its state-dict name and shape (as torch names and shapes it). */
    inline constexpr modelreg_rtneural_detail::TensorInfo kTensors[] = {{
        {table.replace(chr(10), chr(10) + "    ")}
    }};
""" if rows else "")
            checking = ("modelreg_rtneural_detail::check_tensors(doc, kTensors, sizeof(kTensors) / sizeof(kTensors[0]), file);"
                        if rows else "modelreg_rtneural_detail::check_tensors(doc, nullptr, 0, file);")
            body = "\n".join(f"        {line}" for line in statements)
            load_doc = f"""
    /** Checks every tensor's shape in `doc` (a state dict; throws std::runtime_error naming the tensor),
     *  then loads each layer as RTNeural's torch_helpers do. */
    inline void load(Model& model, const nlohmann::json& doc, const std::string& file = "<json>", bool debug = false)
    {{
        (void)debug; // torch_helpers print nothing
        {checking}
{body}
        model.reset();
    }}
"""
        else:
            source = f"come from the model's RTNeural JSON file (models/{spec.name}.json) at run time"
            what = "an RTNeural JSON file"
            layers = ",\n".join(_layer_info(spec))
            detail = _DETAIL
            declaration = f"""
    /** What the RTNeural JSON file must declare, layer by layer. */
    inline constexpr modelreg_rtneural_detail::LayerInfo kLayers[] = {{
    {layers.replace(chr(10), chr(10) + "    ")}
    }};
"""
            load_doc = """
    /** Checks `doc` against Model (throws std::runtime_error naming the layer), then loads it. */
    inline void load(Model& model, const nlohmann::json& doc, const std::string& file = "<json>", bool debug = false)
    {
        modelreg_rtneural_detail::check(doc, kInputSize, kLayers, sizeof(kLayers) / sizeof(kLayers[0]), file);
        model.parseJson(doc, debug);
        model.reset();
    }
"""
        file_name = f"{spec.name}.json"
        usage = f'''//     auto model = modelreg_models::{ident}::load("{file_name}");   // throws on any mismatch
//     modelreg_models::{ident}::reset(*model);           // before the stream, and whenever it restarts'''
        includes = "#include <fstream>\n#include <memory>\n#include <stdexcept>\n#include <string>"
        if form == "torch":
            includes += "\n#include <vector>"
        loading = f'''{declaration}{load_doc}
    /** Reads, checks and loads {what} (throws std::runtime_error on any problem). */
    inline void load(Model& model, const std::string& path, bool debug = false)
    {{
        std::ifstream stream(path);
        if(!stream)
            throw std::runtime_error(path + ": cannot open the file");
        nlohmann::json doc;
        try
        {{
            stream >> doc;
        }}
        catch(const nlohmann::json::exception& exc)
        {{
            throw std::runtime_error(path + ": not valid JSON: " + exc.what());
        }}
        load(model, doc, path, debug);
    }}

    /** make() + load(): a ready model, or std::runtime_error. */
    inline std::unique_ptr<Model> load(const std::string& path)
    {{
        auto model = make();
        load(*model, path);
        return model;
    }}
'''
    where = "weights::" if embedded else ""
    warmup = (f"\n        for(int frame = 0; frame < {where}kRestFrames; ++frame) // to the resting state: no click"
              f"\n            model.forward({where}kRestInput.values);") if rests else ""
    reset_words = (": the resting state, reached by running kRestFrames frames of the rest input "
                   "(a bounded cost, paid at reset)") if rests else ": zeros"
    rest_data_outside = rest_data if rests and not embedded else ""
    return f'''// Written by modelreg's {writer_name} exporter (version {writer_version}) for the
// registry entry "{spec.name}". Do not edit: `modelreg export` rewrites it.
//
// {spec.name}: {spec.in_features} inputs -> {summary} -> {spec.out_features} outputs.
// {_type_words(blocks)}; the weights
// {source}:
//
{usage}
//     alignas(RTNEURAL_DEFAULT_ALIGNMENT) float in[modelreg_models::{ident}::kInputSize] = {{}};
//     model->forward(in);                       // one frame per call; state is kept between calls
//     const float* out = model->getOutputs();   // kOutputSize values
//
// reset() and forward() allocate nothing, lock nothing and make no system call (modelreg's
// rtneural-cpp.realtime check proves it in your toolchain). Flush denormals on the audio thread:
// modelreg_rt::ScopedFlushDenormals (below), or JUCE's ScopedNoDenormals.
//
// Build: C++17, -I<RTNeural checkout>; Eigen backend: -DRTNEURAL_USE_EIGEN=1 -I<checkout>/modules/Eigen
// and define RTNEURAL_DEFAULT_ALIGNMENT the same way in every file (as RTNeural's CMake does);
// models/cpp/CMakeLists.txt (target modelreg_models) sets all of it. A model of 2 MB or more is
// placed in transparent huge pages on Linux (fewer page faults at load); define
// MODELREG_NO_HUGE_PAGES to allocate it the ordinary way.
//
// Pitfall 2: the pointer handed to forward() must be aligned to RTNEURAL_DEFAULT_ALIGNMENT
// (the Eigen backend maps it as aligned; an unaligned pointer aborts in an assertion).
// Use an alignas() buffer as above, or Frame below.
#pragma once

#include <RTNeural/RTNeural.h>

{includes}
{_eigen_guard(spec)}
{helpers}{detail}
namespace modelreg_models
{{
namespace {ident}
{{
    constexpr int kInputSize = {spec.in_features};
    constexpr int kOutputSize = {spec.out_features};

{_model_declaration(spec)}

    /** One input frame, aligned as forward() requires. */
    struct alignas(RTNEURAL_DEFAULT_ALIGNMENT) Frame
    {{
        float values[kInputSize];
    }};

    /** A zeroed model on the heap (it is large, and over-aligned: never put it on an audio thread's stack);
     *  from 2 MB up, in transparent huge pages on Linux (modelreg_rt::ModelAllocation). */
    inline std::unique_ptr<Model> make()
    {{
        return std::make_unique<Model>();
    }}

{rest_data_outside}{loading}
    /** Puts the model's state back to what a new stream starts from (real-time safe){reset_words}. */
    inline void reset(Model& model)
    {{
        model.reset();{warmup}
    }}
}} // namespace {ident}
}} // namespace modelreg_models
'''


def _type_words(blocks: bool) -> str:
    if blocks:
        return ("The types below compose RTNeural's compile-time API for exactly this entry (a ModelT\n"
                "// per straight run of layers, a struct per residual block: its paths, then their sum)")
    return "The type below is RTNeural's compile-time API for exactly this entry"


def stride_period(spec: ModelSpec) -> int:
    """The least common multiple of the entry's conv1d strides (1: no strided layer; each kind's
    ``frame_period``). Every layer steps once per frame, so after a multiple of it every strided
    layer computes again."""
    period = 1
    for leaf in leaves(spec.layers, spec.in_features):
        period = math.lcm(period, leaf.layer.kind.frame_period(leaf.layer))
    return period


def _phase_wrapper(spec: ModelSpec, base: str) -> list[str]:
    """``Model``: ``base`` plus the frame count RTNeural's StridedConv1DT::reset() leaves out.

    StridedConv1DT::reset() resets its convolution but not its frame counter (the dynamic
    StridedConv1D's does): after a reset mid-period its next frames would be held, not computed.
    Counting frames here, reset() steps zeros until every strided layer is back at the start of
    its period (fewer than kStridePeriod frames: a bounded cost), then resets every layer."""
    period = stride_period(spec)
    return [f"/** {base} with the frame count that makes reset() restart every strided conv1d (see reset()),",
            "  *  allocated as modelreg_rt::ModelAllocation says (a large model in huge pages). */",
            f"struct Model : {base}, modelreg_rt::ModelAllocation",
            "{",
            f"    static constexpr int kStridePeriod = {period}; // lcm of the strides",
            "    int phase = 0; // frames since the strided layers last computed together, mod kStridePeriod",
            "",
            *_CONSTRUCTOR,
            "",
            "    /** One frame (aligned to RTNEURAL_DEFAULT_ALIGNMENT); returns the first output. */",
            "    float forward(const float* input) noexcept",
            "    {",
            "        phase = (phase + 1) % kStridePeriod;",
            f"        return {base}::forward(input);",
            "    }",
            "",
            "    /** Zeros, as a new stream starts: RTNeural's StridedConv1DT::reset() keeps its frame counter,",
            "     *  so zeros are stepped until every strided layer computes on the next frame, then every",
            "     *  layer is reset. Real-time safe (fewer than kStridePeriod frames, nothing allocated). */",
            "    void reset() noexcept",
            "    {",
            f"        alignas(RTNEURAL_DEFAULT_ALIGNMENT) float zeros[{spec.in_features}] = {{}};",
            "        while(phase != 0)",
            "            forward(zeros);",
            f"        {base}::reset();",
            "    }",
            "};"]


# Not `= default`: with no user-provided constructor, make()'s `new Model()` would zero the whole
# object before RTNeural's constructors zero its layers again (one more pass over megabytes).
_CONSTRUCTOR = ["    Model() {} // the bases' constructors initialise everything"]


def _allocated_model(base: str) -> list[str]:
    """``Model``: ``base`` with the class-scope allocation of modelreg_rt (nothing else added)."""
    return [f"/** {base}, allocated as modelreg_rt::ModelAllocation says (a large model in huge pages). */",
            f"struct Model : {base}, modelreg_rt::ModelAllocation",
            "{",
            *_CONSTRUCTOR,
            "};"]


def _model_declaration(spec: ModelSpec) -> str:
    """``Model``: the entry's ModelT (``Stages``), or (a model with blocks) the structs and ``Net``,
    with modelreg_rt's allocation (make() places a large model in huge pages); with a strided
    conv1d, it also restarts its strides on reset()."""
    strided = stride_period(spec) > 1
    if not has_blocks(spec):
        declared = model_type(spec).replace(chr(10), chr(10) + "    ")
        text = "\n".join([f"using Stages = {declared};", "",
                          *(_phase_wrapper(spec, "Stages") if strided else _allocated_model("Stages"))])
    else:
        text = "\n\n".join(_compose(spec).structs) + "\n\n" + "\n".join(
            _phase_wrapper(spec, "Net") if strided else _allocated_model("Net"))
    return "\n".join(f"    {line}" if line else "" for line in text.split("\n"))


def _header_facts(text: str) -> dict[str, str]:
    """The exporter version and registry entry a header's first two lines name ("?" when unreadable)."""
    match = re.match(re.escape(_MARKER) + r' \(version (\S+)\) for the\n// registry entry "([^"]*)"', text)
    return {"version": match[1], "model": match[2]} if match else {"version": "?", "model": "?"}


class RTNeuralCppExporter(Exporter):
    """Writes ``models/cpp/NAME.h``: the entry's ``RTNeural::ModelT`` type and its loader (weights from
    the RTNeural JSON file at run time, or compiled in: the entry's ``cpp_weights``), plus
    ``models/cpp/CMakeLists.txt`` (the ``modelreg_models`` target hosts link)."""

    name = "rtneural-cpp"
    runtime = "RTNeural C++ compiled header (ModelT)"
    # 4: reset(), the real-time helpers (ScopedFlushDenormals, the alignment guard), embedded weights.
    # 5: embedded loaders reuse their buffers (dense: DenseT's T** overload; recurrent: one nested matrix).
    # 6: Model derives from modelreg_rt::ModelAllocation: make() places a model of 2 MB or more in
    #    transparent huge pages on Linux (MODELREG_NO_HUGE_PAGES turns it off).
    version = "6"
    thread_safe = True
    suffix = ".h"

    def session(self) -> contextlib.AbstractContextManager[None]:
        """One look at the RTNeural tree and one self-test per cached program for the whole run."""
        from .cpp import run_scope

        return run_scope()

    def artifact_path(self, spec: ModelSpec) -> Path:
        return spec.registry_dir / "models" / "cpp" / f"{spec.name}.h"

    def export(self, spec: ModelSpec, module: RealtimeModel, path: Path) -> None:
        from .exporter import refuse_unholdable

        refuse_unholdable(spec, self.name)
        # Written in place: ``path`` is the pipeline's temporary file (renamed once checked).
        path.write_text(_render_for(spec, module), encoding="utf-8")
        write_cmake(path.parent)

    def check_artifact(self, spec: ModelSpec, path: Path) -> list[Problem]:
        from ..paths import display_path

        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return [Problem(f"cannot read the header: {exc}", file=display_path(path), model=spec.name)]
        if not text.startswith(_MARKER):
            return [Problem("not a header written by modelreg's rtneural-cpp exporter", file=display_path(path),
                            model=spec.name, expected=f"a file starting with {_MARKER!r}")]
        # The code must be what this entry makes; embedded weights are compared with the checkpoint by verify().
        if _without_data(text) != _without_data(render_header(spec, _placeholder_arrays(spec), _placeholder_rest(spec))):
            wanted = ("a struct of RTNeural compile-time layers per path" if has_blocks(spec)
                      else model_type(spec)).replace("\n", "").replace("    ", " ")
            return [Problem("header does not declare this entry's architecture", file=display_path(path),
                            model=spec.name, expected=f"{wanted}, weights {spec.cpp_weights}")]
        return []

    def check_file(self, path: Path) -> list[Problem]:
        """A header on its own: written by this exporter, at this version. What it declares is
        proven against its registry entry and in C++ by ``modelreg validate``, not here."""
        from ..paths import display_path

        shown = display_path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return [Problem(f"cannot read the header: {exc}", file=shown)]
        if not text.startswith(_MARKER):
            return [Problem("not a header written by modelreg's rtneural-cpp exporter (modelreg checks only its own "
                            "headers)", file=shown, expected=f"a file starting with {_MARKER!r}")]
        written = _header_facts(text)
        if written["version"] != self.version:
            return [Problem(f"written by version {written['version']} of the rtneural-cpp exporter; run "
                            f"`modelreg export --force {written['model']}`", file=shown,
                            expected=f"version {self.version}", found=f"version {written['version']}")]
        return []

    def describe_file(self, path: Path) -> str:
        text = path.read_text(encoding="utf-8")
        facts = _header_facts(text)
        weights = ("embedded weights" if _DATA_BEGIN in text else "weights from its PyTorch state-dict JSON"
                   if "torch_helpers" in text else "weights from its RTNeural JSON file")
        return (f"rtneural-cpp header (version {facts['version']}, {weights}) of the registry entry {facts['model']!r}; "
                "what it declares is proven against the entry and in RTNeural C++ by `modelreg validate`")

    def verify(self, spec: ModelSpec, module: RealtimeModel, path: Path, tolerance: float) -> Parity:
        from ..errors import ArtifactError
        from ..paths import display_path
        from .cpp import NotConfigured, header_runner, load_checked, parity, toolchain_for

        if spec.cpp_weights == "embedded" or needs_rest(spec):
            # Bit for bit the float32 values of the RTNeural export of this very module (and its resting state).
            expected = _data_section(_render_for(spec, module))
            if _data_section(path.read_text(encoding="utf-8")) != expected:
                what = "embedded weights" if spec.cpp_weights == "embedded" else "resting-state constants"
                raise ArtifactError(Problem(f"the header's {what} are not the checkpoint's",
                                            file=display_path(path), model=spec.name,
                                            expected="what the checkpoint's RTNeural export and resting state give"))
        try:
            toolchain = toolchain_for(spec)
        except NotConfigured as exc:
            return Parity.skip(str(exc), tolerance)
        embedded = spec.cpp_weights == "embedded"
        with tempfile.TemporaryDirectory(prefix="modelreg-cpp-") as folder, \
                header_runner(toolchain, path, cpp_namespace(spec), spec.name, embedded=embedded) as runner:
            # The weights file of this very module (byte-identical to models/NAME.json, or to
            # models/torch/NAME.json, when that is fresh), so the result does not depend on export
            # order or on --format; None for embedded weights.
            weights = write_weights(spec, module, Path(folder))
            loaded = load_checked(runner, weights, model=spec.name, sizes=(spec.in_features, spec.out_features))
            result = parity(runner, loaded, module, tolerance)
            return attrs.evolve(result, details={"load_ms": loaded.load_ns / 1e6, "weights": spec.cpp_weights})

    def extra_checks(self, spec: ModelSpec, module: RealtimeModel, tolerance: float) -> list[tuple[str, Callable[[Path], CheckResult]]]:
        """``realtime`` (reset() and forward() of the header's model allocate nothing; RealtimeSanitizer
        where a clang has it), ``denormals`` (the silent tail timed with and without flushing) and, for
        an audio-rate entry, ``latency`` (whole blocks: the real-time factor of the compiled model)."""
        return header_engine_checks(spec, module, tolerance)


def write_weights(spec: ModelSpec, module: RealtimeModel, folder: Path) -> Path | None:
    """The weights file an rtneural-cpp header of ``spec`` loads, written into ``folder`` from
    ``module``: the RTNeural JSON file (``"json"`` form), the state-dict JSON that rtneural-torch
    writes (``"torch"`` form: a model with blocks), or None (embedded weights)."""
    form = weights_form(spec)
    if form == "embedded":
        return None
    weights = folder / f"{spec.name}.json"
    if form == "torch":
        write_state_json(spec, module, weights)
    else:
        from .exporter import RTNeuralExporter

        RTNeuralExporter().export(spec, module, weights)
    return weights


def header_engine_checks(spec: ModelSpec, module: RealtimeModel, tolerance: float,
                         ) -> list[tuple[str, Callable[[Path], CheckResult]]]:
    """``realtime``, ``rest`` (stateful models), ``denormals`` and ``latency`` (audio-rate models) of an
    rtneural-cpp header's model (its declared weights form)."""
    from ..report import CheckResult
    from .cpp import (NotConfigured, Runner, Toolchain, denormal_check, header_runner, load_checked, realtime_check,
                      toolchain_for)

    embedded = spec.cpp_weights == "embedded"
    engine = f"the compiled header ({'embedded' if embedded else 'JSON'} weights)"

    def in_cpp(name: str, body: Callable[[Toolchain, Path | None], CheckResult]) -> CheckResult:
        """``body(toolchain, weights)``: ``weights`` is the file of this very module which the
        header's JSON form loads (:func:`write_weights`; None for embedded weights). Skipped when C++
        is not configured."""
        try:
            toolchain = toolchain_for(spec)
        except NotConfigured as exc:
            return CheckResult(name, "skip", str(exc))
        with tempfile.TemporaryDirectory(prefix="modelreg-cpp-") as folder:
            return body(toolchain, write_weights(spec, module, Path(folder)))

    def runner(toolchain: Toolchain, path: Path, sanitizer: Any = None) -> Runner:
        return header_runner(toolchain, path, cpp_namespace(spec), spec.name, embedded=embedded, sanitizer=sanitizer)

    def realtime(path: Path) -> CheckResult:
        name = "rtneural-cpp.realtime"
        return in_cpp(name, lambda toolchain, weights: realtime_check(
            name, spec, toolchain, engine, lambda: runner(toolchain, path), weights,
            lambda sanitizer: runner(toolchain, path, sanitizer)))

    def denormals(path: Path) -> CheckResult:
        from ..denormals import tail_frames

        tail = tail_frames(module.resting_state() if module.is_stateful else None)

        def body(toolchain: Toolchain, weights: Path | None) -> CheckResult:
            with runner(toolchain, path) as program:
                return denormal_check("rtneural-cpp.denormals", spec, toolchain, engine, program, weights, tail)

        return in_cpp("rtneural-cpp.denormals", body)

    def rest(path: Path) -> CheckResult:
        """The click after reset() on the rest input, in the header's model: RTNeural's zero reset and
        the header's own reset() (the resting state when the entry asks for it)."""
        from ..rest import rest_check

        name = "rtneural-cpp.rest"
        resting = module.resting_state()

        def body(toolchain: Toolchain, weights: Path | None) -> CheckResult:
            with runner(toolchain, path) as program:
                loaded = load_checked(program, weights, model=spec.name, sizes=(spec.in_features, spec.out_features))

                def run(frames: Any, mode: str) -> Any:
                    if mode == "rest" and not needs_rest(spec):
                        return None  # this header's reset() zeroes: no resting reset to measure
                    return program.run(loaded, frames[0], reset="zero" if mode == "zeros" else "default")[None]

                result = rest_check(name, run, resting, reset=spec.reset, runtime=engine)
            if needs_rest(spec) and resting.converged:
                result = attrs.evolve(result, figures={**result.figures,
                                                       "reset_frames": rest_warmup(resting, stride_period(spec))})
            return result

        return in_cpp(name, body)

    def latency(path: Path) -> CheckResult:
        """Whole blocks in the header's model, timed in C++ as ``rtneural.dynamic_latency`` times
        parseJson's: the compiled model is what a host built on the header runs, so it is judged."""
        from ..audio import block_result
        from ..inputs import edge_cases
        from ..latency import latency_window

        name = "rtneural-cpp.latency"

        def body(toolchain: Toolchain, weights: Path | None) -> CheckResult:
            with runner(toolchain, path) as program:
                loaded = load_checked(program, weights, model=spec.name, sizes=(spec.in_features, spec.out_features))
                frame = edge_cases(spec.in_features, input_range=spec.input_range)["normal"][0]
                samples, warmup, overhead = program.time(loaded, frame, seconds=latency_window(),
                                                         block=spec.block_size or 1)
            return block_result(name, samples, spec, warmup=warmup,
                                prefix=f"RTNeural C++ compiled header (ModelT, {spec.cpp_weights} weights, "
                                       f"{toolchain.backend}): ",
                                extra={"clock_overhead_ns": overhead, **toolchain.figures(),
                                       "api": "the rtneural-cpp header's ModelT", "weights": spec.cpp_weights})

        return in_cpp(name, body)

    checks: list[tuple[str, Callable[[Path], CheckResult]]] = [("realtime", realtime)]
    if spec.is_stateful:
        checks.append(("rest", rest))
    checks.append(("denormals", denormals))
    if spec.is_audio_rate:  # a per-sample model: its real-time factor beside parseJson's (per-frame latency is
        checks.append(("latency", latency))  # rtneural.dynamic_latency's, and at these sizes the two agree)
    return checks


def _render_for(spec: ModelSpec, module: RealtimeModel) -> str:
    """The header of ``module``'s weights (embedded when the entry asks) and resting state (when it resets to it)."""
    from ..errors import ExportError

    arrays = weight_arrays(spec, module) if spec.cpp_weights == "embedded" else None
    resting = None
    if needs_rest(spec):
        resting = module.resting_state()
        if not resting.converged:
            raise ExportError.at(f"reset = \"rest\" cannot be honoured: {resting.verdict}", model=spec.name,
                                 key=f"models.{spec.name}.reset")
    return render_header(spec, arrays, resting)


def _placeholder_rest(spec: ModelSpec) -> RestingState | None:
    """A resting state for the lines outside the data section (its numbers sit inside it)."""
    if not needs_rest(spec):
        return None
    from ..rest import RestingState

    return RestingState(spec.name, spec.rest_frame, "converged", frames=0, float32_frames=0)


def _placeholder_arrays(spec: ModelSpec) -> list[list[Any]] | None:
    """Zeros of the shapes the entry's layers write: renders every line of an embedded header but its data."""
    if spec.cpp_weights != "embedded":
        return None
    import numpy as np

    return [[np.zeros(shape, np.float32) for shape in leaf.layer.kind.rtneural_shapes(leaf.layer, leaf.in_features)]
            for leaf in unstacked(leaves(spec.layers, spec.in_features))]


def _data_section(text: str) -> str:
    """The embedded weights of a header (its lines between the data markers; "" for the JSON form)."""
    begin, end = text.find(_DATA_BEGIN), text.find(_DATA_END)
    return text[begin:end] if begin >= 0 and end > begin else ""


def _without_data(text: str) -> str:
    section = _data_section(text)
    return text.replace(section, "") if section else text


# ---------------------------------------------------------------- CMake

CMAKE_FILENAME = "CMakeLists.txt"
_CMAKE = """# Written by modelreg's rtneural-cpp exporter. Do not edit: `modelreg export` rewrites it.
#
# The generated model headers as one INTERFACE library. In your host's CMakeLists.txt:
#
#     set(MODELREG_RTNEURAL_DIR /path/to/RTNeural)   # the checkout (holding RTNeural/ and modules/)
#     add_subdirectory(models/cpp)
#     target_link_libraries(your_app PRIVATE modelreg_models)
#
# or, when the host builds RTNeural's own CMake target `RTNeural`, that target is used instead.
cmake_minimum_required(VERSION 3.16)
project(modelreg_models LANGUAGES CXX)

set(MODELREG_RTNEURAL_DIR "" CACHE PATH "The RTNeural checkout (the folder holding RTNeural/ and modules/)")
set(MODELREG_RTNEURAL_BACKEND "eigen" CACHE STRING "RTNeural backend: eigen or stl")
set_property(CACHE MODELREG_RTNEURAL_BACKEND PROPERTY STRINGS eigen stl)
set(MODELREG_RTNEURAL_ALIGNMENT "16" CACHE STRING "RTNEURAL_DEFAULT_ALIGNMENT: 16, or 32 with AVX enabled")

add_library(modelreg_models INTERFACE)
target_include_directories(modelreg_models INTERFACE ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_features(modelreg_models INTERFACE cxx_std_17)

if(TARGET RTNeural)
    target_link_libraries(modelreg_models INTERFACE RTNeural)
else()
    if(NOT EXISTS "${MODELREG_RTNEURAL_DIR}/RTNeural/RTNeural.h")
        message(FATAL_ERROR "modelreg_models: set MODELREG_RTNEURAL_DIR to an RTNeural checkout (found: '${MODELREG_RTNEURAL_DIR}')")
    endif()
    target_include_directories(modelreg_models INTERFACE "${MODELREG_RTNEURAL_DIR}")
    target_compile_definitions(modelreg_models INTERFACE RTNEURAL_DEFAULT_ALIGNMENT=${MODELREG_RTNEURAL_ALIGNMENT})
    if(MODELREG_RTNEURAL_BACKEND STREQUAL "eigen")
        target_include_directories(modelreg_models INTERFACE "${MODELREG_RTNEURAL_DIR}/modules/Eigen")
        target_compile_definitions(modelreg_models INTERFACE RTNEURAL_USE_EIGEN=1)
    endif()
endif()
# Large fixed-size layers exceed Eigen's stack limit (OBJECT_ALLOCATED_ON_STACK_IS_TOO_BIG); the
# models live on the heap (make()), so the limit is lifted. Each header says which of its layers needs it.
target_compile_definitions(modelreg_models INTERFACE EIGEN_STACK_ALLOCATION_LIMIT=0)
"""


def write_cmake(folder: Path) -> Path:
    """``models/cpp/CMakeLists.txt`` (the same for every registry), rewritten only when it differs."""
    path = folder / CMAKE_FILENAME
    try:
        if path.read_text(encoding="utf-8") == _CMAKE:
            return path
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write_text(path, _CMAKE)
    return path
