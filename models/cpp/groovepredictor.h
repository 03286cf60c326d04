// Written by modelreg's rtneural-cpp exporter (version 1) for the
// registry entry "groovepredictor". Do not edit: `modelreg export` rewrites it.
//
// groovepredictor: 64 inputs -> dense 128 tanh, dense 64 tanh, dense 32 tanh -> 32 outputs.
// The type below is RTNeural's compile-time API for exactly this entry; the weights come
// from the model's RTNeural JSON file (models/groovepredictor.json) at run time:
//
//     auto model = modelreg_models::groovepredictor::load("groovepredictor.json");   // throws on any mismatch
//     model->reset();
//     alignas(RTNEURAL_DEFAULT_ALIGNMENT) float in[modelreg_models::groovepredictor::kInputSize] = {};
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

namespace modelreg_models
{
namespace groovepredictor
{
    constexpr int kInputSize = 64;
    constexpr int kOutputSize = 32;

    using Model = RTNeural::ModelT<float, 64, 32,
            RTNeural::DenseT<float, 64, 128>,
            RTNeural::TanhActivationT<float, 128>,
            RTNeural::DenseT<float, 128, 64>,
            RTNeural::TanhActivationT<float, 64>,
            RTNeural::DenseT<float, 64, 32>,
            RTNeural::TanhActivationT<float, 32>>;

    /** One input frame, aligned as forward() requires. */
    struct alignas(RTNEURAL_DEFAULT_ALIGNMENT) Frame
    {
        float values[kInputSize];
    };

    /** What the RTNeural JSON file must declare, layer by layer. */
    inline constexpr modelreg_rtneural_detail::LayerInfo kLayers[] = {
        {"dense", 128, "tanh"},
        {"dense", 64, "tanh"},
        {"dense", 32, "tanh"}
    };

    /** A zeroed model on the heap (it is large, and over-aligned: never put it on an audio thread's stack). */
    inline std::unique_ptr<Model> make()
    {
        return std::make_unique<Model>();
    }

    /** Checks `doc` against Model (throws std::runtime_error naming the layer), then loads it. */
    inline void load(Model& model, const nlohmann::json& doc, const std::string& file = "<json>", bool debug = false)
    {
        modelreg_rtneural_detail::check(doc, kInputSize, kLayers, sizeof(kLayers) / sizeof(kLayers[0]), file);
        model.parseJson(doc, debug);
        model.reset();
    }

    /** Reads, checks and loads an RTNeural JSON file (throws std::runtime_error on any problem). */
    inline void load(Model& model, const std::string& path, bool debug = false)
    {
        std::ifstream stream(path);
        if(!stream)
            throw std::runtime_error(path + ": cannot open the file");
        nlohmann::json doc;
        try
        {
            stream >> doc;
        }
        catch(const nlohmann::json::exception& exc)
        {
            throw std::runtime_error(path + ": not valid JSON: " + exc.what());
        }
        load(model, doc, path, debug);
    }

    /** make() + load(): a ready model, or std::runtime_error. */
    inline std::unique_ptr<Model> load(const std::string& path)
    {
        auto model = make();
        load(*model, path);
        return model;
    }
} // namespace groovepredictor
} // namespace modelreg_models
