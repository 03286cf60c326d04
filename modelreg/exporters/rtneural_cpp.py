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
:mod:`modelreg.rtneural_cpp`), loads an RTNeural file written from the same
module, and compares it with torch on the parity inputs. Without a configured
checkout the header is still written and its parity is reported as skipped.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import atomic_write_text
from ..errors import Problem
from ..plugins import Exporter, Parity

if TYPE_CHECKING:
    from ..builder import RealtimeModel
    from ..spec import ModelSpec

__all__ = ["RTNeuralCppExporter", "cpp_namespace", "model_type", "render_header"]

# Our activation names -> (RTNeural's JSON name, RTNeural's compile-time layer).
_ACTIVATIONS = {
    "linear": ("", None),
    "tanh": ("tanh", "TanhActivationT"),
    "relu": ("relu", "ReLuActivationT"),
    "sigmoid": ("sigmoid", "SigmoidActivationT"),
    "softmax": ("softmax", "SoftmaxActivationT"),
    "elu": ("elu", "ELuActivationT"),
}
_RECURRENT = {"lstm": "LSTMLayerT", "gru": "GRULayerT"}
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
        if layer.type == "dense":
            types.append(f"RTNeural::DenseT<float, {size}, {layer.units}>")
            activation = _ACTIVATIONS[layer.activation][1]
            if activation is not None:
                types.append(f"RTNeural::{activation}<float, {layer.units}>")
        else:
            types.append(f"RTNeural::{_RECURRENT[layer.type]}<float, {size}, {layer.units}>")
        size = layer.units
    return types


def model_type(spec: ModelSpec) -> str:
    """The entry's ``RTNeural::ModelT<float, IN, OUT, ...>`` type."""
    inner = ",\n    ".join(_layer_types(spec))
    return f"RTNeural::ModelT<float, {spec.in_features}, {spec.out_features},\n    {inner}>"


def largest_matrix(spec: ModelSpec) -> tuple[int, str]:
    """Bytes of the largest fixed-size matrix RTNeural's Eigen backend holds for one layer, and which."""
    best = (0, "")
    size = spec.in_features
    for index, layer in enumerate(spec.layers):
        u = layer.units
        if layer.type == "dense":
            elements = u * (size + 1)
        elif layer.type == "lstm":
            elements = 4 * u * (size + u + 1)
        else:
            elements = 3 * u * (max(size, u) + 1)
        if 4 * elements > best[0]:
            best = (4 * elements, f"layers[{index}] {layer.type} {size} -> {u}")
        size = u
    return best


# The checking code shared by every header (guarded, so several headers can be included together).
_DETAIL = r'''
#ifndef MODELREG_RTNEURAL_CPP_DETAIL_V1
#define MODELREG_RTNEURAL_CPP_DETAIL_V1
namespace modelreg_rtneural_detail
{
/** One layer as the RTNeural JSON file must declare it. */
struct LayerInfo
{
    const char* type; // "dense", "lstm" or "gru"
    int units;
    const char* activation; // RTNeural's name; "" is linear (dense only)
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

inline void expect_matrix(const nlohmann::json& m, std::size_t rows, std::size_t cols, const std::string& file, const std::string& where)
{
    if(!m.is_array() || m.size() != rows)
        fail(file, where, "expected " + std::to_string(rows) + " rows of " + std::to_string(cols) + ", found "
                              + (m.is_array() ? std::to_string(m.size()) + " rows" : std::string(m.type_name())));
    for(std::size_t r = 0; r < rows; ++r)
        expect_numbers(m[r], cols, file, where + "[" + std::to_string(r) + "]");
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
    std::size_t size = static_cast<std::size_t>(in_size);
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
        const std::size_t u = static_cast<std::size_t>(e.units);
        if(!l.contains("weights") || !l["weights"].is_array())
            fail(file, at + ".weights", "missing");
        const auto& w = l["weights"];
        if(type == "dense")
        {
            const std::string activation = l.contains("activation") && l["activation"].is_string() ? l["activation"].get<std::string>() : "";
            if(activation != e.activation)
                fail(file, at + ".activation", std::string("expected '") + e.activation + "', found '" + activation + "'");
            if(w.size() != 2)
                fail(file, at + ".weights", "expected a kernel and a bias, found " + std::to_string(w.size()) + " arrays");
            expect_matrix(w[0], size, u, file, at + ".weights[0]");
            expect_numbers(w[1], u, file, at + ".weights[1]");
        }
        else
        {
            const std::size_t gates = type == "lstm" ? 4 : 3;
            if(w.size() != 3)
                fail(file, at + ".weights", "expected 3 arrays (kernel, recurrent kernel, bias), found " + std::to_string(w.size()));
            expect_matrix(w[0], size, gates * u, file, at + ".weights[0]");
            expect_matrix(w[1], u, gates * u, file, at + ".weights[1]");
            if(type == "lstm")
                expect_numbers(w[2], gates * u, file, at + ".weights[2]");
            else
                expect_matrix(w[2], 2, gates * u, file, at + ".weights[2]");
        }
        size = u;
    }
}
} // namespace modelreg_rtneural_detail
#endif // MODELREG_RTNEURAL_CPP_DETAIL_V1
'''


def render_header(spec: ModelSpec) -> str:
    """The text of ``models/cpp/NAME.h`` for ``spec``."""
    ident = cpp_identifier(spec.name)
    matrix_bytes, matrix_layer = largest_matrix(spec)
    layers = ",\n".join(
        f'    {{"{layer.type}", {layer.units}, "{_ACTIVATIONS[layer.activation][0] if layer.type == "dense" else ""}"}}'
        for layer in spec.layers
    )
    summary = ", ".join(
        f"{layer.type} {layer.units}" + (f" {layer.activation}" if layer.type == "dense" else "") for layer in spec.layers
    )
    eigen_guard = ""
    if matrix_bytes > _EIGEN_STACK_LIMIT:
        eigen_guard = f'''
// Pitfall 1 (Eigen backend): {matrix_layer} holds a fixed-size matrix of {matrix_bytes} bytes, above
// Eigen's default stack allocation limit ({_EIGEN_STACK_LIMIT}), which fails to compile with
// OBJECT_ALLOCATED_ON_STACK_IS_TOO_BIG. Build every file that includes this header with
// -DEIGEN_STACK_ALLOCATION_LIMIT=0 (or a limit of at least {matrix_bytes}), and keep the model on the
// heap (make()): it is far too large for an audio thread's stack.
#if RTNEURAL_USE_EIGEN && EIGEN_STACK_ALLOCATION_LIMIT != 0 && EIGEN_STACK_ALLOCATION_LIMIT < {matrix_bytes}
#error "modelreg: {spec.name}: {matrix_layer} needs {matrix_bytes} bytes, above EIGEN_STACK_ALLOCATION_LIMIT: build with -DEIGEN_STACK_ALLOCATION_LIMIT=0"
#endif
'''
    return f'''{_MARKER} (version {RTNeuralCppExporter.version}) for the
// registry entry "{spec.name}". Do not edit: `modelreg export` rewrites it.
//
// {spec.name}: {spec.in_features} inputs -> {summary} -> {spec.out_features} outputs.
// The type below is RTNeural's compile-time API for exactly this entry; the weights come
// from the model's RTNeural JSON file (models/{spec.name}.json) at run time:
//
//     auto model = modelreg_models::{ident}::load("{spec.name}.json");   // throws on any mismatch
//     model->reset();
//     alignas(RTNEURAL_DEFAULT_ALIGNMENT) float in[modelreg_models::{ident}::kInputSize] = {{}};
//     model->forward(in);                       // one frame per call; state is kept between calls
//     const float* out = model->getOutputs();   // kOutputSize values
//
// Build: C++17, -I<RTNeural checkout>; Eigen backend: -DRTNEURAL_USE_EIGEN=1 -I<checkout>/modules/Eigen
// and define RTNEURAL_DEFAULT_ALIGNMENT the same way in every file (as RTNeural's CMake does).
//
// Pitfall 2: the pointer handed to forward() must be aligned to RTNEURAL_DEFAULT_ALIGNMENT
// (the Eigen backend maps it as aligned; an unaligned pointer aborts in an assertion).
// Use an alignas() buffer as above, or Frame below.
#pragma once

#include <RTNeural/RTNeural.h>

#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
{eigen_guard}{_DETAIL}
namespace modelreg_models
{{
namespace {ident}
{{
    constexpr int kInputSize = {spec.in_features};
    constexpr int kOutputSize = {spec.out_features};

    using Model = {model_type(spec).replace(chr(10), chr(10) + "        ")};

    /** One input frame, aligned as forward() requires. */
    struct alignas(RTNEURAL_DEFAULT_ALIGNMENT) Frame
    {{
        float values[kInputSize];
    }};

    /** What the RTNeural JSON file must declare, layer by layer. */
    inline constexpr modelreg_rtneural_detail::LayerInfo kLayers[] = {{
    {layers.replace(chr(10), chr(10) + "    ")}
    }};

    /** A zeroed model on the heap (it is large, and over-aligned: never put it on an audio thread's stack). */
    inline std::unique_ptr<Model> make()
    {{
        return std::make_unique<Model>();
    }}

    /** Checks `doc` against Model (throws std::runtime_error naming the layer), then loads it. */
    inline void load(Model& model, const nlohmann::json& doc, const std::string& file = "<json>", bool debug = false)
    {{
        modelreg_rtneural_detail::check(doc, kInputSize, kLayers, sizeof(kLayers) / sizeof(kLayers[0]), file);
        model.parseJson(doc, debug);
        model.reset();
    }}

    /** Reads, checks and loads an RTNeural JSON file (throws std::runtime_error on any problem). */
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
}} // namespace {ident}
}} // namespace modelreg_models
'''


class RTNeuralCppExporter(Exporter):
    """Writes ``models/cpp/NAME.h``: the entry's ``RTNeural::ModelT`` type and a checked loader."""

    name = "rtneural-cpp"
    version = "1"

    def artifact_path(self, spec: ModelSpec) -> Path:
        return spec.registry_dir / "models" / "cpp" / f"{spec.name}.h"

    def export(self, spec: ModelSpec, module: RealtimeModel, path: Path) -> None:
        atomic_write_text(path, render_header(spec))

    def check_artifact(self, spec: ModelSpec, path: Path) -> list[Problem]:
        from ..registry import display_path

        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return [Problem(f"cannot read the header: {exc}", file=display_path(path), model=spec.name)]
        if not text.startswith(_MARKER):
            return [Problem("not a header written by modelreg's rtneural-cpp exporter", file=display_path(path),
                            model=spec.name, expected=f"a file starting with {_MARKER!r}")]
        if text != render_header(spec):
            wanted = model_type(spec).replace("\n", "").replace("    ", " ")
            return [Problem("header does not declare this entry's architecture", file=display_path(path),
                            model=spec.name, expected=wanted)]
        return []

    def verify(self, spec: ModelSpec, module: RealtimeModel, path: Path, tolerance: float) -> Parity:
        from ..rtneural_cpp import NotConfigured, header_runner, load_checked, parity, toolchain_for
        from .rtneural import RTNeuralExporter

        try:
            toolchain = toolchain_for(spec)
        except NotConfigured as exc:
            return Parity.skip(str(exc), tolerance)
        with tempfile.TemporaryDirectory(prefix="modelreg-cpp-") as folder:
            # The RTNeural file of this very module (byte-identical to models/NAME.json when that is
            # fresh), so the result does not depend on export order or on --format.
            weights = Path(folder) / f"{spec.name}.json"
            RTNeuralExporter().export(spec, module, weights)
            with header_runner(toolchain, path, cpp_namespace(spec), spec.name) as runner:
                loaded = load_checked(runner, weights, model=spec.name, sizes=(spec.in_features, spec.out_features))
                return parity(runner, loaded, module, tolerance)
