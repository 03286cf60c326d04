// modelreg's RTNeural runner: runs RTNeural JSON files in RTNeural's own C++ engine.
//
// Shipped with the modelreg Python package and compiled on first use against
// the user's RTNeural checkout (see modelreg/rtneural/cpp.py). One process
// serves many models over stdin/stdout, so that a registry of 200 models does
// not pay 200 process starts.
//
// Two builds of this one file:
//   dynamic (default)             models are loaded with RTNeural::json_parser::parseJson<float>
//   -DMODELREG_HEADER="file.h"    models are loaded by a header from modelreg's rtneural-cpp
//   -DMODELREG_HEADER_NS=ns       exporter (its compile-time RTNeural::ModelT type)
//
// Protocol (requests are text lines; float32 / int64 payloads are raw, native byte order):
//   hello                                   -> ok modelreg-rtneural-runner PROTOCOL BACKEND MODE
//   load PATH                               -> ok ID IN OUT NLAYERS, NLAYERS lines "NAME IN OUT",
//                                              then "log N" and N bytes (the loader's debug output)
//   run ID FRAMES IN + FRAMES*IN float32    -> ok, then FRAMES*OUT float32 (reset first, one frame per call)
//   time ID IN MINWARM WARMSEC MINITER MAXITER SECONDS + IN float32
//                                           -> ok WARMUP N OVERHEAD_NS, then N int64 (ns per call)
//   free ID                                 -> ok
//   quit
// Any request can answer "err N" followed by N bytes of message instead.
// `runner --selftest` prints the hello line plus "selftest ok" after running a built-in model.

#include <RTNeural/RTNeural.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#ifdef MODELREG_HEADER
#include MODELREG_HEADER
#endif

namespace
{
constexpr int kProtocol = 1;

#if RTNEURAL_USE_EIGEN
const char* const kBackend = "eigen";
#elif RTNEURAL_USE_XSIMD
const char* const kBackend = "xsimd";
#else
const char* const kBackend = "stl";
#endif

#ifdef MODELREG_HEADER
const char* const kMode = "header";
#else
const char* const kMode = "dynamic";
#endif

// Frames handed to forward() must be aligned to RTNEURAL_DEFAULT_ALIGNMENT (the Eigen
// backend maps them as aligned; an unaligned pointer aborts in an assertion). 64 covers
// every alignment RTNeural supports.
constexpr std::size_t kAlign = 64;

struct AlignedFree
{
    void operator()(float* p) const { ::operator delete[](p, std::align_val_t(kAlign)); }
};
using Buffer = std::unique_ptr<float[], AlignedFree>;

Buffer aligned_floats(std::size_t n)
{
    // Rounded up to whole alignment blocks (at least one), zero-filled.
    const std::size_t per_block = kAlign / sizeof(float);
    const std::size_t count = std::max<std::size_t>((n + per_block - 1) / per_block, 1) * per_block;
    auto* p = static_cast<float*>(::operator new[](count * sizeof(float), std::align_val_t(kAlign)));
    std::fill(p, p + count, 0.0f);
    return Buffer(p);
}

/** One loaded model, whatever API loaded it. */
struct Engine
{
    virtual ~Engine() = default;
    virtual int in_size() const = 0;
    virtual int out_size() const = 0;
    virtual void reset() = 0;
    virtual void forward(const float* input) = 0;
    virtual const float* outputs() const = 0;
    // (name, in, out) per layer, as the loaded model holds them.
    virtual std::vector<std::string> describe() const = 0;
};

#ifndef MODELREG_HEADER
struct DynamicEngine final : Engine
{
    std::unique_ptr<RTNeural::Model<float>> model;
    int in = 0;

    int in_size() const override { return in; }
    int out_size() const override { return model->getOutSize(); }
    void reset() override { model->reset(); }
    void forward(const float* input) override { model->forward(input); }
    const float* outputs() const override { return model->getOutputs(); }
    std::vector<std::string> describe() const override
    {
        std::vector<std::string> lines;
        for(const auto* layer : model->layers)
        {
            const std::string name = layer->getName();
            lines.push_back((name.empty() ? std::string("?") : name) + " " + std::to_string(layer->in_size) + " "
                + std::to_string(layer->out_size));
        }
        return lines;
    }
};
#else
namespace header_model = MODELREG_HEADER_NS;

struct HeaderEngine final : Engine
{
    std::unique_ptr<header_model::Model> model = header_model::make();

    int in_size() const override { return header_model::kInputSize; }
    int out_size() const override { return header_model::kOutputSize; }
    void reset() override { model->reset(); }
    void forward(const float* input) override { model->forward(input); }
    const float* outputs() const override { return model->getOutputs(); }
    // The header's own loader checks every layer against the type before parseJson.
    std::vector<std::string> describe() const override { return {}; }
};
#endif

// ---------------------------------------------------------------- I/O

std::FILE* out = stdout;

void reply(const std::string& line)
{
    std::fwrite(line.data(), 1, line.size(), out);
    std::fputc('\n', out);
}

void reply_error(const std::string& message)
{
    reply("err " + std::to_string(message.size()));
    std::fwrite(message.data(), 1, message.size(), out);
    std::fflush(out);
}

bool read_exact(void* data, std::size_t bytes)
{
    return std::fread(data, 1, bytes, stdin) == bytes;
}

bool read_line(std::string& line)
{
    line.clear();
    int c;
    while((c = std::fgetc(stdin)) != EOF)
    {
        if(c == '\n')
            return true;
        line.push_back(static_cast<char>(c));
    }
    return !line.empty();
}

// ---------------------------------------------------------------- commands

std::map<long, std::unique_ptr<Engine>> engines;
long next_id = 1;

/** Loads PATH; the loader's debug output (RTNeural prints it to std::cout) is captured. */
std::unique_ptr<Engine> load(const std::string& path, std::string& log, std::string& error)
{
    std::ifstream stream(path);
    if(!stream)
    {
        error = "cannot open " + path;
        return {};
    }
    std::ostringstream captured;
    auto* previous = std::cout.rdbuf(captured.rdbuf());
    std::unique_ptr<Engine> engine;
    try
    {
#ifndef MODELREG_HEADER
        auto model = RTNeural::json_parser::parseJson<float>(stream, true);
        std::cout.rdbuf(previous);
        log = captured.str();
        if(!model)
        {
            error = "RTNeural's parseJson returned no model ('in_shape' or 'layers' is not an array)";
            return {};
        }
        if(model->layers.empty())
        {
            error = "RTNeural's parseJson built a model without layers";
            return {};
        }
        auto dynamic = std::make_unique<DynamicEngine>();
        dynamic->in = model->layers.front()->in_size;
        dynamic->model = std::move(model);
        engine = std::move(dynamic);
#else
        auto header = std::make_unique<HeaderEngine>();
        header_model::load(*header->model, path, true);
        std::cout.rdbuf(previous);
        log = captured.str();
        engine = std::move(header);
#endif
    }
    catch(const std::exception& exc)
    {
        std::cout.rdbuf(previous);
        log = captured.str();
        error = std::string("the loader threw: ") + exc.what();
        return {};
    }
    return engine;
}

void cmd_load(const std::string& path)
{
    std::string log, error;
    auto engine = load(path, log, error);
    if(!engine)
    {
        reply_error(log.empty() ? error : error + "\n--- loader output ---\n" + log);
        return;
    }
    const long id = next_id++;
    const auto layers = engine->describe();
    reply("ok " + std::to_string(id) + " " + std::to_string(engine->in_size()) + " " + std::to_string(engine->out_size())
        + " " + std::to_string(layers.size()));
    for(const auto& layer : layers)
        reply(layer);
    reply("log " + std::to_string(log.size()));
    std::fwrite(log.data(), 1, log.size(), out);
    std::fflush(out);
    engine->reset();
    engines[id] = std::move(engine);
}

Engine* find(long id)
{
    auto it = engines.find(id);
    return it == engines.end() ? nullptr : it->second.get();
}

/** The model `id`, fed frames of `in` values; nullptr after replying an error when there is none or the sizes differ. */
Engine* engine_for(long id, long in)
{
    Engine* engine = find(id);
    if(!engine)
    {
        reply_error("no model with id " + std::to_string(id));
        return nullptr;
    }
    if(in != engine->in_size())
    {
        reply_error("frames of " + std::to_string(in) + " values sent to a model of " + std::to_string(engine->in_size()) + " inputs");
        return nullptr;
    }
    return engine;
}

bool cmd_run(long id, long frames, long in)
{
    // The whole payload is read first, whatever happens, so that the stream stays in step.
    auto inputs = aligned_floats(static_cast<std::size_t>(std::max(frames * in, 1L)));
    if(!read_exact(inputs.get(), sizeof(float) * static_cast<std::size_t>(frames * in)))
        return false;
    Engine* engine = engine_for(id, in);
    if(!engine)
        return true; // the error was replied
    // One frame at a time from an aligned buffer, as a host calls forward().
    auto frame = aligned_floats(static_cast<std::size_t>(in));
    const int n_out = engine->out_size();
    std::vector<float> result(static_cast<std::size_t>(frames * n_out));
    engine->reset();
    for(long t = 0; t < frames; ++t)
    {
        std::copy(inputs.get() + t * in, inputs.get() + (t + 1) * in, frame.get());
        engine->forward(frame.get());
        std::copy(engine->outputs(), engine->outputs() + n_out, result.begin() + t * n_out);
    }
    engine->reset();
    reply("ok");
    std::fwrite(result.data(), sizeof(float), result.size(), out);
    std::fflush(out);
    return true;
}

bool cmd_time(long id, long in, long min_warmup, double warmup_seconds, long min_iterations, long max_iterations, double seconds)
{
    auto input = aligned_floats(static_cast<std::size_t>(std::max(in, 1L)));
    if(!read_exact(input.get(), sizeof(float) * static_cast<std::size_t>(in)))
        return false;
    Engine* engine = engine_for(id, in);
    if(!engine)
        return true; // the error was replied

    using clock = std::chrono::steady_clock;
    volatile float sink = 0.0f; // the outputs are read, so the calls cannot be optimised away
    engine->reset();
    long warmup = 0;
    const auto warm_end = clock::now() + std::chrono::duration<double>(warmup_seconds);
    while(warmup < min_warmup || clock::now() < warm_end)
    {
        engine->forward(input.get());
        sink = sink + engine->outputs()[0];
        ++warmup;
    }

    std::vector<std::int64_t> samples(static_cast<std::size_t>(max_iterations));
    const auto end = clock::now() + std::chrono::duration<double>(seconds);
    long count = 0;
    while(count < max_iterations && (count < min_iterations || clock::now() < end))
    {
        const auto start = clock::now();
        engine->forward(input.get());
        const auto stop = clock::now();
        sink = sink + engine->outputs()[0];
        samples[static_cast<std::size_t>(count++)] = std::chrono::duration_cast<std::chrono::nanoseconds>(stop - start).count();
    }

    // What two clock reads cost with nothing between them (the measurement floor).
    std::vector<std::int64_t> empty(1001);
    for(auto& e : empty)
    {
        const auto a = clock::now();
        const auto b = clock::now();
        e = std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count();
    }
    std::nth_element(empty.begin(), empty.begin() + 500, empty.end());
    engine->reset();
    (void)sink;

    reply("ok " + std::to_string(warmup) + " " + std::to_string(count) + " " + std::to_string(empty[500]));
    std::fwrite(samples.data(), sizeof(std::int64_t), static_cast<std::size_t>(count), out);
    std::fflush(out);
    return true;
}

std::string hello()
{
    return std::string("modelreg-rtneural-runner ") + std::to_string(kProtocol) + " " + kBackend + " " + kMode;
}

/** Proves a cached binary works: for the dynamic build, a tiny model with a known output. */
int selftest()
{
#ifndef MODELREG_HEADER
    const std::string json = R"({"in_shape": [null, 2], "layers": [{"type": "dense", "activation": "",
        "shape": [null, 1], "weights": [[[0.5], [0.25]], [1.0]]}]})";
    std::istringstream text(json);
    nlohmann::json parsed;
    text >> parsed;
    auto model = RTNeural::json_parser::parseJson<float>(parsed, false);
    auto input = aligned_floats(2);
    input[0] = 2.0f;
    input[1] = 4.0f;
    model->forward(input.get());
    if(model->getOutputs()[0] != 3.0f)
    {
        std::printf("selftest failed: expected 3, got %g\n", static_cast<double>(model->getOutputs()[0]));
        return 1;
    }
#else
    auto model = header_model::make();
    model->reset();
#endif
    std::printf("%s\nselftest ok\n", hello().c_str());
    return 0;
}
} // namespace

int main(int argc, char** argv)
{
    if(argc > 1 && std::string(argv[1]) == "--selftest")
        return selftest();

    std::string line;
    while(read_line(line))
    {
        std::istringstream words(line);
        std::string command;
        words >> command;
        if(command == "hello")
        {
            reply("ok " + hello());
            std::fflush(out);
        }
        else if(command == "load")
        {
            cmd_load(line.size() > 5 ? line.substr(5) : std::string());
        }
        else if(command == "run")
        {
            long id = 0, frames = 0, in = 0;
            words >> id >> frames >> in;
            if(!cmd_run(id, std::max(frames, 0L), std::max(in, 0L)))
                return 3;
        }
        else if(command == "time")
        {
            long id = 0, in = 0, min_warmup = 0, min_iterations = 0, max_iterations = 0;
            double warmup_seconds = 0, seconds = 0;
            words >> id >> in >> min_warmup >> warmup_seconds >> min_iterations >> max_iterations >> seconds;
            if(!cmd_time(id, std::max(in, 0L), min_warmup, warmup_seconds, min_iterations, std::max(max_iterations, 1L), seconds))
                return 3;
        }
        else if(command == "free")
        {
            long id = 0;
            words >> id;
            engines.erase(id);
            reply("ok");
            std::fflush(out);
        }
        else if(command == "quit")
        {
            return 0;
        }
        else
        {
            reply_error("unknown command: " + command);
        }
    }
    return 0;
}
