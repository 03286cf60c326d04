// A real-time host of the bundled models: load each one (from its RTNeural JSON file, or from the
// weights compiled into its header), reset it, run a stream one frame per call as an audio or MIDI
// callback would, and compare with the outputs modelreg wrote (torch's, for the same inputs).
//
//     host STREAMS_DIR [JSON_DIR]
//
// STREAMS_DIR/NAME.stream holds int32 frames, in, out, then frames*in inputs and frames*out
// expected outputs (float32, little-endian); JSON_DIR holds NAME.json (the JSON form only).
#include "dynamicsengine.h"
#include "emotionrecognizer.h"
#include "groovepredictor.h"
#include "harmonypredictor.h"
#include "melodytransformer.h"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace
{
struct Stream
{
    int frames = 0, in = 0, out = 0;
    std::vector<float> inputs, expected;
};

bool read_stream(const std::string& path, Stream& stream)
{
    std::ifstream file(path, std::ios::binary);
    std::int32_t head[3];
    if(!file.read(reinterpret_cast<char*>(head), sizeof(head)))
        return false;
    stream.frames = head[0];
    stream.in = head[1];
    stream.out = head[2];
    stream.inputs.resize(static_cast<std::size_t>(head[0]) * head[1]);
    stream.expected.resize(static_cast<std::size_t>(head[0]) * head[2]);
    return static_cast<bool>(file.read(reinterpret_cast<char*>(stream.inputs.data()), stream.inputs.size() * sizeof(float))
                             && file.read(reinterpret_cast<char*>(stream.expected.data()), stream.expected.size() * sizeof(float)));
}

/** Loads model NAME of namespace NS, runs its stream, prints the largest difference; false when too large. */
template <typename Load, typename Reset, typename Model>
bool run(const char* name, const std::string& streams, Load load, Reset reset, int in_size, int out_size, Model*)
{
    Stream stream;
    if(!read_stream(streams + "/" + name + ".stream", stream) || stream.in != in_size || stream.out != out_size)
    {
        std::printf("FAIL %s: no stream of %d inputs and %d outputs\n", name, in_size, out_size);
        return false;
    }
    const auto started = std::chrono::steady_clock::now();
    auto model = load(); // not on the audio thread: it allocates
    const double load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();

    // The audio thread's part: reset, then one frame per call from an aligned buffer.
    modelreg_rt::ScopedFlushDenormals no_denormals;
    reset(*model);
    std::vector<float, std::allocator<float>> frame_storage(static_cast<std::size_t>(in_size) + 16);
    auto* frame = reinterpret_cast<float*>((reinterpret_cast<std::uintptr_t>(frame_storage.data()) + 63) & ~std::uintptr_t(63));
    double worst = 0.0;
    for(int t = 0; t < stream.frames; ++t)
    {
        for(int i = 0; i < in_size; ++i)
            frame[i] = stream.inputs[static_cast<std::size_t>(t) * in_size + i];
        model->forward(frame);
        const float* out = model->getOutputs();
        for(int o = 0; o < out_size; ++o)
            worst = std::fmax(worst, std::fabs(double(out[o]) - stream.expected[static_cast<std::size_t>(t) * out_size + o]));
    }
    const bool ok = worst <= 1e-4;
    std::printf("%s %s: %d frames, max abs error %.3g, load %.3f ms\n", ok ? "ok  " : "FAIL", name, stream.frames, worst, load_ms);
    return ok;
}
} // namespace

#if MODELREG_EMBEDDED
#define MODELREG_HOST_RUN(NAME)                                                                                  \
    ok &= run(#NAME, streams, [] { return modelreg_models::NAME::load(); },                                   \
              [](modelreg_models::NAME::Model& m) { modelreg_models::NAME::reset(m); },                          \
              modelreg_models::NAME::kInputSize, modelreg_models::NAME::kOutputSize, (modelreg_models::NAME::Model*)nullptr)
#else
#define MODELREG_HOST_RUN(NAME)                                                                                  \
    ok &= run(#NAME, streams, [&] { return modelreg_models::NAME::load(json + "/" #NAME ".json"); },          \
              [](modelreg_models::NAME::Model& m) { modelreg_models::NAME::reset(m); },                          \
              modelreg_models::NAME::kInputSize, modelreg_models::NAME::kOutputSize, (modelreg_models::NAME::Model*)nullptr)
#endif

int main(int argc, char** argv)
{
    if(argc < 2)
    {
        std::printf("usage: host STREAMS_DIR [JSON_DIR]\n");
        return 2;
    }
    const std::string streams = argv[1];
    const std::string json = argc > 2 ? argv[2] : ".";
    (void)json;
    bool ok = true;
    MODELREG_HOST_RUN(emotionrecognizer);
    MODELREG_HOST_RUN(melodytransformer);
    MODELREG_HOST_RUN(harmonypredictor);
    MODELREG_HOST_RUN(groovepredictor);
    MODELREG_HOST_RUN(dynamicsengine);
    return ok ? 0 : 1;
}
