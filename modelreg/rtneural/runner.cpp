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
//   load PATH                               -> ok ID IN OUT NLAYERS LOAD_NS FAULTS, NLAYERS lines "NAME IN OUT",
//                                              then "log N" and N bytes (the loader's debug output);
//                                              PATH "-": the header's embedded weights
//                                              (FAULTS: the process's page faults during the load, -1 unknown)
//   run ID FRAMES IN [RESET] + FRAMES*IN float32
//                                           -> ok, then FRAMES*OUT float32 (reset first, one frame per call);
//                                              RESET: "default" (the header's reset(): what the entry asks),
//                                              "zero" (RTNeural's own reset())
//   time ID IN MINWARM WARMSEC MINITER MAXITER SECONDS [BLOCK] + IN float32
//                                           -> ok WARMUP N OVERHEAD_NS, then N int64 (ns per call, or per
//                                              BLOCK calls when BLOCK > 1)
//   alloc ID FRAMES IN + FRAMES*IN float32  -> ok CALLS BYTES, then "first WHAT SIZE PHASE" (or "first none"):
//                                              heap allocations and frees made by reset() and forward()
//                                              over the frames (the counter is armed around those calls only)
//   subnormal ID IN NSIG NTAIL + NSIG*IN float32 + IN float32 (the rest frame)
//                                           -> ok SUBNORMAL_OUTPUTS, then 2*(NSIG+NTAIL) int64: ns per
//                                              forward() over the signal then NTAIL rest frames, first with
//                                              the FPU as it is, then with denormals flushed (FTZ/DAZ)
//   free ID                                 -> ok
//   quit
// Any request can answer "err N" followed by N bytes of message instead.
// `runner --selftest` prints the hello line plus "selftest ok" after running a built-in model.
// -DMODELREG_RTSAN (clang's -fsanitize=realtime): reset() and forward() are called from a
// [[clang::nonblocking]] function, so RealtimeSanitizer stops the process with the stack of any
// allocation, lock or blocking system call they make; the allocation counter is left out.

#include <RTNeural/RTNeural.h>

#include <algorithm>
#include <chrono>
#include <cmath>
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
#if defined(__unix__) || defined(__APPLE__)
#include <sys/resource.h>
#define MODELREG_HAS_RUSAGE 1
#endif

// The runner reports the alignment pitfall from its self-test, with what to change, instead of
// failing to compile on the headers' guard.
#define MODELREG_RT_NO_ALIGNMENT_GUARD 1
#include "modelreg_rt.h"

#ifdef MODELREG_HEADER
#include MODELREG_HEADER
#endif

// ---------------------------------------------------------------- the allocation counter
//
// Every heap entry point counts while `armed` (this thread only): malloc and friends (glibc: the
// real ones are __libc_*), and operator new / delete in all their forms. Off, it costs a branch.
#if !defined(MODELREG_RTSAN) && defined(__GLIBC__)
#define MODELREG_COUNT_ALLOCATIONS 1
extern "C" void* __libc_malloc(std::size_t);
extern "C" void* __libc_calloc(std::size_t, std::size_t);
extern "C" void* __libc_realloc(void*, std::size_t);
extern "C" void __libc_free(void*);
extern "C" void* __libc_memalign(std::size_t, std::size_t);

namespace alloc_counter
{
thread_local bool armed = false;
long calls = 0;
long bytes = 0;
const char* first_what = nullptr;
std::size_t first_size = 0;

inline void note(const char* what, std::size_t size)
{
    if(!armed)
        return;
    if(calls == 0)
    {
        first_what = what;
        first_size = size;
    }
    ++calls;
    bytes += static_cast<long>(size);
}
} // namespace alloc_counter

extern "C"
{
void* malloc(std::size_t n)
{
    alloc_counter::note("malloc", n);
    return __libc_malloc(n);
}
void* calloc(std::size_t count, std::size_t n)
{
    alloc_counter::note("calloc", count * n);
    return __libc_calloc(count, n);
}
void* realloc(void* p, std::size_t n)
{
    alloc_counter::note("realloc", n);
    return __libc_realloc(p, n);
}
void free(void* p)
{
    if(p)
        alloc_counter::note("free", 0);
    __libc_free(p);
}
void* memalign(std::size_t alignment, std::size_t n)
{
    alloc_counter::note("memalign", n);
    return __libc_memalign(alignment, n);
}
void* aligned_alloc(std::size_t alignment, std::size_t n)
{
    alloc_counter::note("aligned_alloc", n);
    return __libc_memalign(alignment, n);
}
int posix_memalign(void** out, std::size_t alignment, std::size_t n)
{
    alloc_counter::note("posix_memalign", n);
    *out = __libc_memalign(alignment, n);
    return *out ? 0 : 12; // ENOMEM
}
}

namespace
{
void* counted_new(std::size_t n, const char* what)
{
    alloc_counter::note(what, n);
    if(void* p = __libc_malloc(n ? n : 1))
        return p;
    throw std::bad_alloc();
}
void* counted_new_aligned(std::size_t n, std::align_val_t alignment, const char* what)
{
    alloc_counter::note(what, n);
    if(void* p = __libc_memalign(static_cast<std::size_t>(alignment), n ? n : 1))
        return p;
    throw std::bad_alloc();
}
void counted_delete(void* p, const char* what)
{
    if(p)
        alloc_counter::note(what, 0);
    __libc_free(p);
}
} // namespace

void* operator new(std::size_t n) { return counted_new(n, "operator new"); }
void* operator new[](std::size_t n) { return counted_new(n, "operator new[]"); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { try { return counted_new(n, "operator new"); } catch(...) { return nullptr; } }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { try { return counted_new(n, "operator new[]"); } catch(...) { return nullptr; } }
void* operator new(std::size_t n, std::align_val_t a) { return counted_new_aligned(n, a, "operator new (aligned)"); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_new_aligned(n, a, "operator new[] (aligned)"); }
void operator delete(void* p) noexcept { counted_delete(p, "operator delete"); }
void operator delete[](void* p) noexcept { counted_delete(p, "operator delete[]"); }
void operator delete(void* p, std::size_t) noexcept { counted_delete(p, "operator delete"); }
void operator delete[](void* p, std::size_t) noexcept { counted_delete(p, "operator delete[]"); }
void operator delete(void* p, std::align_val_t) noexcept { counted_delete(p, "operator delete (aligned)"); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_delete(p, "operator delete[] (aligned)"); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { counted_delete(p, "operator delete (aligned)"); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { counted_delete(p, "operator delete[] (aligned)"); }
#endif

namespace
{
constexpr int kProtocol = 2;

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

#ifdef MODELREG_TEST_ALLOCATE_IN_FORWARD
// For modelreg's own tests only: a model that allocates on every forward(), as a careless layer
// would, so that the real-time checks can be seen to fail (build with this defined, e.g. through
// $MODELREG_CXXFLAGS).
inline void allocate_like_a_careless_layer()
{
    auto* scratch = new std::vector<float>(MODELREG_TEST_ALLOCATE_IN_FORWARD);
    (*scratch)[0] = 1.0f;
    asm volatile("" : : "r"(scratch) : "memory");
    delete scratch;
}
#define MODELREG_TEST_ALLOCATION() allocate_like_a_careless_layer()
#else
#define MODELREG_TEST_ALLOCATION() ((void)0)
#endif

/** One loaded model, whatever API loaded it. */
struct Engine
{
    virtual ~Engine() = default;
    virtual int in_size() const = 0;
    virtual int out_size() const = 0;
    virtual void reset() = 0;
    // RTNeural's own reset (state zeroed), whatever reset() does for the entry.
    virtual void reset_zero() = 0;
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
    void reset_zero() override { model->reset(); }
    void forward(const float* input) override
    {
        MODELREG_TEST_ALLOCATION();
        model->forward(input);
    }
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
    void reset() override { header_model::reset(*model); }
    void reset_zero() override { model->reset(); }
    void forward(const float* input) override
    {
        MODELREG_TEST_ALLOCATION();
        model->forward(input);
    }
    const float* outputs() const override { return model->getOutputs(); }
    // The header's own loader checks every layer against the type before parseJson.
    std::vector<std::string> describe() const override { return {}; }
};
#endif

// ---------------------------------------------------------------- the audio thread's calls

#ifdef MODELREG_RTSAN
#define MODELREG_NONBLOCKING [[clang::nonblocking]]
#else
#define MODELREG_NONBLOCKING
#endif

// What a host calls on its audio thread, and nothing else: under RealtimeSanitizer these are the
// real-time context; with the counter, the calls it is armed around.
void rt_reset(Engine& engine) MODELREG_NONBLOCKING { engine.reset(); }
void rt_forward(Engine& engine, const float* input) MODELREG_NONBLOCKING { engine.forward(input); }

#ifdef MODELREG_COUNT_ALLOCATIONS
const char* phase = "";
long phase_frame = -1;
const char* first_phase = "";
long first_frame = -1;

struct Armed
{
    Armed(const char* what, long frame)
    {
        phase = what;
        phase_frame = frame;
        alloc_counter::armed = true;
    }
    ~Armed()
    {
        alloc_counter::armed = false;
        if(alloc_counter::calls > 0 && first_frame == -1 && first_phase[0] == '\0')
        {
            first_phase = phase;
            first_frame = phase_frame;
        }
    }
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
#ifndef MODELREG_HEADER_EMBEDDED
    std::ifstream stream(path);
    if(!stream)
    {
        error = "cannot open " + path;
        return {};
    }
#endif
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
#ifdef MODELREG_HEADER_EMBEDDED
        (void)path; // the weights are compiled in
        header_model::load(*header->model);
#else
        header_model::load(*header->model, path, true);
#endif
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

/** Page faults of this process so far (minor and major: first touches of memory, and reads of mapped files), or -1. */
long page_faults()
{
#ifdef MODELREG_HAS_RUSAGE
    rusage usage {};
    if(getrusage(RUSAGE_SELF, &usage) == 0)
        return usage.ru_minflt + usage.ru_majflt;
#endif
    return -1;
}

void cmd_load(const std::string& path)
{
    std::string log, error;
    const long faults_before = page_faults();
    const auto started = std::chrono::steady_clock::now();
    auto engine = load(path, log, error);
    const auto load_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started).count();
    const long faults_after = page_faults();
    const long faults = faults_before < 0 || faults_after < 0 ? -1 : faults_after - faults_before;
    if(!engine)
    {
        reply_error(log.empty() ? error : error + "\n--- loader output ---\n" + log);
        return;
    }
    const long id = next_id++;
    const auto layers = engine->describe();
    reply("ok " + std::to_string(id) + " " + std::to_string(engine->in_size()) + " " + std::to_string(engine->out_size())
        + " " + std::to_string(layers.size()) + " " + std::to_string(load_ns) + " " + std::to_string(faults));
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

bool cmd_run(long id, long frames, long in, const std::string& reset_mode)
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
    if(reset_mode == "zero")
        engine->reset_zero();
    else if(reset_mode == "default" || reset_mode.empty())
        engine->reset();
    else
    {
        reply_error("unknown reset mode: " + reset_mode + " (expected default or zero)");
        return true;
    }
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

bool cmd_time(long id, long in, long min_warmup, double warmup_seconds, long min_iterations, long max_iterations, double seconds,
              long block)
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
        for(long b = 0; b < block; ++b) // an audio callback: one block of samples, one frame each
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

bool cmd_alloc(long id, long frames, long in)
{
    auto inputs = aligned_floats(static_cast<std::size_t>(std::max(frames * in, 1L)));
    if(!read_exact(inputs.get(), sizeof(float) * static_cast<std::size_t>(frames * in)))
        return false;
    Engine* engine = engine_for(id, in);
    if(!engine)
        return true;
    // Every buffer is made before the counter is armed: only the model's own calls count.
    auto frame = aligned_floats(static_cast<std::size_t>(in));
#ifdef MODELREG_COUNT_ALLOCATIONS
    alloc_counter::calls = 0;
    alloc_counter::bytes = 0;
    alloc_counter::first_what = nullptr;
    first_phase = "";
    first_frame = -1;
    {
        Armed armed("reset", -1);
        rt_reset(*engine);
    }
#else
    rt_reset(*engine);
#endif
    for(long t = 0; t < frames; ++t)
    {
        std::copy(inputs.get() + t * in, inputs.get() + (t + 1) * in, frame.get());
#ifdef MODELREG_COUNT_ALLOCATIONS
        Armed armed("forward", t);
#endif
        rt_forward(*engine, frame.get());
    }
#ifdef MODELREG_COUNT_ALLOCATIONS
    const long calls = alloc_counter::calls, bytes = alloc_counter::bytes;
    std::string first = "first none";
    if(calls > 0)
    {
        std::string what = alloc_counter::first_what; // "operator new[] (aligned)": one word on the line
        std::replace(what.begin(), what.end(), ' ', '_');
        first = "first " + what + " " + std::to_string(alloc_counter::first_size) + " " + first_phase
            + (first_frame >= 0 ? ":" + std::to_string(first_frame) : std::string());
    }
    reply("ok " + std::to_string(calls) + " " + std::to_string(bytes));
#else
    reply("ok 0 0");
    const std::string first = "first uncounted"; // RealtimeSanitizer watches instead
#endif
    reply(first);
    std::fflush(out);
    return true;
}

bool cmd_subnormal(long id, long in, long n_signal, long n_tail)
{
    auto signal = aligned_floats(static_cast<std::size_t>(std::max(n_signal * in, 1L)));
    auto rest = aligned_floats(static_cast<std::size_t>(std::max(in, 1L)));
    if(!read_exact(signal.get(), sizeof(float) * static_cast<std::size_t>(n_signal * in))
       || !read_exact(rest.get(), sizeof(float) * static_cast<std::size_t>(in)))
        return false;
    Engine* engine = engine_for(id, in);
    if(!engine)
        return true;
    using clock = std::chrono::steady_clock;
    auto frame = aligned_floats(static_cast<std::size_t>(in));
    const int n_out = engine->out_size();
    std::vector<std::int64_t> ns(static_cast<std::size_t>(2 * (n_signal + n_tail)));
    long subnormal_outputs = 0;
    for(int flushed = 0; flushed < 2; ++flushed)
    {
        std::unique_ptr<modelreg_rt::ScopedFlushDenormals> flush;
        if(flushed)
            flush = std::make_unique<modelreg_rt::ScopedFlushDenormals>();
        engine->reset();
        std::int64_t* times = ns.data() + flushed * (n_signal + n_tail);
        for(long t = 0; t < n_signal + n_tail; ++t)
        {
            const float* source = t < n_signal ? signal.get() + t * in : rest.get();
            std::copy(source, source + in, frame.get());
            const auto start = clock::now();
            engine->forward(frame.get());
            const auto stop = clock::now();
            times[t] = std::chrono::duration_cast<std::chrono::nanoseconds>(stop - start).count();
            if(!flushed && t >= n_signal)
                for(int o = 0; o < n_out; ++o)
                    subnormal_outputs += std::fpclassify(engine->outputs()[o]) == FP_SUBNORMAL;
        }
    }
    engine->reset();
    reply("ok " + std::to_string(subnormal_outputs));
    std::fwrite(ns.data(), sizeof(std::int64_t), ns.size(), out);
    std::fflush(out);
    return true;
}

std::string hello()
{
    return std::string("modelreg-rtneural-runner ") + std::to_string(kProtocol) + " " + kBackend + " " + kMode;
}

/** The alignment pitfall: RTNeural maps Eigen's buffers as aligned to RTNEURAL_DEFAULT_ALIGNMENT; Eigen
 *  aligns them only to EIGEN_MAX_ALIGN_BYTES (16 without AVX). "" when the build is sound. */
std::string alignment_problem()
{
#if RTNEURAL_USE_EIGEN
    if(EIGEN_MAX_ALIGN_BYTES < RTNEURAL_DEFAULT_ALIGNMENT)
        return "RTNEURAL_DEFAULT_ALIGNMENT=" + std::to_string(RTNEURAL_DEFAULT_ALIGNMENT) + " but Eigen aligns its buffers to "
            + std::to_string(EIGEN_MAX_ALIGN_BYTES) + " bytes (no AVX in this build): forward() fails Eigen's alignment "
            "assertion, or with NDEBUG reads misaligned buffers unreported. Enable AVX (-mavx or -march=...) or build with "
            "-DRTNEURAL_DEFAULT_ALIGNMENT=16";
    // Eigen's allocator, as the dynamic layers use it: every buffer must have RTNeural's alignment.
    for(int i = 0; i < 8; ++i)
    {
        Eigen::Matrix<float, Eigen::Dynamic, 1> buffer(64 + i);
        if(reinterpret_cast<std::uintptr_t>(buffer.data()) % RTNEURAL_DEFAULT_ALIGNMENT != 0)
            return "a buffer Eigen allocated is not aligned to RTNEURAL_DEFAULT_ALIGNMENT ("
                + std::to_string(RTNEURAL_DEFAULT_ALIGNMENT) + ")";
    }
#endif
    return "";
}

/** Proves a cached binary works: for the dynamic build, a tiny model with a known output. */
int selftest()
{
    const std::string misaligned = alignment_problem();
    if(!misaligned.empty())
    {
        std::printf("%s\nselftest failed: %s\n", hello().c_str(), misaligned.c_str());
        return 1;
    }
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
            std::string reset_mode;
            words >> id >> frames >> in >> reset_mode;
            if(!cmd_run(id, std::max(frames, 0L), std::max(in, 0L), reset_mode))
                return 3;
        }
        else if(command == "time")
        {
            long id = 0, in = 0, min_warmup = 0, min_iterations = 0, max_iterations = 0, block = 1;
            double warmup_seconds = 0, seconds = 0;
            words >> id >> in >> min_warmup >> warmup_seconds >> min_iterations >> max_iterations >> seconds;
            if(!(words >> block))
                block = 1;
            if(!cmd_time(id, std::max(in, 0L), min_warmup, warmup_seconds, min_iterations, std::max(max_iterations, 1L), seconds,
                         std::max(block, 1L)))
                return 3;
        }
        else if(command == "alloc")
        {
            long id = 0, frames = 0, in = 0;
            words >> id >> frames >> in;
            if(!cmd_alloc(id, std::max(frames, 0L), std::max(in, 0L)))
                return 3;
        }
        else if(command == "subnormal")
        {
            long id = 0, in = 0, n_signal = 0, n_tail = 0;
            words >> id >> in >> n_signal >> n_tail;
            if(!cmd_subnormal(id, std::max(in, 0L), std::max(n_signal, 0L), std::max(n_tail, 0L)))
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
