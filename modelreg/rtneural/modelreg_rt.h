// modelreg's real-time helpers for RTNeural hosts: no JSON, no file I/O, no allocation on the audio thread.
//
// The rtneural-cpp exporter copies this text into every header it writes (so a header stays one
// file to include); modelreg's C++ runner includes it from the package. Guarded: several headers
// can be included in one translation unit.
#ifndef MODELREG_RT_H_V1
#define MODELREG_RT_H_V1

#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__SSE__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 1)
#include <xmmintrin.h>
#define MODELREG_RT_X86 1
#endif

// Pitfall (Eigen backend): RTNeural maps its buffers as aligned to RTNEURAL_DEFAULT_ALIGNMENT, but
// Eigen aligns what it allocates only to EIGEN_MAX_ALIGN_BYTES: 16 without AVX. With 32 and no AVX,
// forward() fails Eigen's "data is not aligned" assertion, or with NDEBUG reads misaligned data
// unreported. Refuse the combination here, where it can still be changed.
#if defined(RTNEURAL_USE_EIGEN) && RTNEURAL_USE_EIGEN && defined(EIGEN_MAX_ALIGN_BYTES) && defined(RTNEURAL_DEFAULT_ALIGNMENT) \
    && !defined(MODELREG_RT_NO_ALIGNMENT_GUARD)
#if RTNEURAL_DEFAULT_ALIGNMENT > EIGEN_MAX_ALIGN_BYTES
#error "modelreg: RTNEURAL_DEFAULT_ALIGNMENT is larger than the alignment Eigen gives its buffers (EIGEN_MAX_ALIGN_BYTES: 16 without AVX). Enable AVX (-mavx, or -march=<your target>) or define RTNEURAL_DEFAULT_ALIGNMENT=16 in every file."
#endif
#endif

namespace modelreg_rt
{
/**
 * Flush subnormal floats to zero while it lives (x86: MXCSR FTZ + DAZ; arm64: FPCR.FZ), restoring the
 * previous mode on destruction. Recurrent state decaying towards zero on silence becomes subnormal,
 * and each operation on a subnormal costs 10-100x: put one at the top of the audio callback, as
 * JUCE's ScopedNoDenormals does.
 */
class ScopedFlushDenormals
{
public:
    ScopedFlushDenormals() noexcept
    {
#if defined(MODELREG_RT_X86)
        previous = _mm_getcsr();
        _mm_setcsr(previous | 0x8040u); // FTZ (bit 15) and DAZ (bit 6)
#elif defined(__aarch64__)
        std::uint64_t fpcr;
        __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
        previous = fpcr;
        __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr | (1ull << 24)));
#endif
    }

    ~ScopedFlushDenormals()
    {
#if defined(MODELREG_RT_X86)
        _mm_setcsr(static_cast<unsigned int>(previous));
#elif defined(__aarch64__)
        __asm__ __volatile__("msr fpcr, %0" : : "r"(previous));
#endif
    }

    ScopedFlushDenormals(const ScopedFlushDenormals&) = delete;
    ScopedFlushDenormals& operator=(const ScopedFlushDenormals&) = delete;

private:
    std::uint64_t previous = 0;
};

/** One piece of a model's embedded weights: float32 values, little-endian, as bytes. */
struct Chunk
{
    const char* bytes;
    std::size_t size;
};

/**
 * The embedded weights, read in order (the order and layout of the model's RTNeural JSON file),
 * straight from the header's data into the layouts RTNeural's setters take: the same values its
 * JSON loader would hand them. Not real-time: load time (it allocates the setters' buffers).
 */
class Weights
{
public:
    Weights(const Chunk* chunks, std::size_t n_chunks) noexcept : chunks(chunks), n_chunks(n_chunks)
    {
        const std::uint32_t probe = 1;
        little = *reinterpret_cast<const unsigned char*>(&probe) == 1;
    }

    /** The next n values into out. */
    void read(float* out, std::size_t n)
    {
        auto* target = reinterpret_cast<unsigned char*>(out);
        std::size_t bytes = n * sizeof(float);
        while(bytes > 0 && chunk < n_chunks)
        {
            const std::size_t take = std::min(bytes, chunks[chunk].size - offset);
            const auto* source = reinterpret_cast<const unsigned char*>(chunks[chunk].bytes) + offset;
            std::memcpy(target, source, take); // a value may straddle two chunks: bytes, then values
            target += take;
            bytes -= take;
            offset += take;
            if(offset == chunks[chunk].size)
            {
                ++chunk;
                offset = 0;
            }
        }
        if(!little) // the data is little-endian
            for(std::size_t i = 0; i < n; ++i)
                swap_bytes(out + i);
        consumed += n;
    }

    std::size_t values_read() const noexcept { return consumed; }

    std::vector<float> vec(int n)
    {
        std::vector<float> out(static_cast<std::size_t>(n));
        read(out.data(), out.size());
        return out;
    }

    /** [rows][cols] as stored. */
    std::vector<std::vector<float>> rows(int n_rows, int n_cols)
    {
        std::vector<std::vector<float>> out(static_cast<std::size_t>(n_rows), std::vector<float>(static_cast<std::size_t>(n_cols)));
        for(auto& row : out)
            read(row.data(), row.size());
        return out;
    }

    /** [cols][rows] from [rows][cols]: a dense kernel [in][out] as DenseT::setWeights takes it, [out][in]. */
    std::vector<std::vector<float>> transposed(int n_rows, int n_cols)
    {
        std::vector<float> row(static_cast<std::size_t>(n_cols));
        std::vector<std::vector<float>> out(static_cast<std::size_t>(n_cols), std::vector<float>(static_cast<std::size_t>(n_rows)));
        for(int r = 0; r < n_rows; ++r)
        {
            read(row.data(), row.size());
            for(int c = 0; c < n_cols; ++c)
                out[static_cast<std::size_t>(c)][static_cast<std::size_t>(r)] = row[static_cast<std::size_t>(c)];
        }
        return out;
    }

    // The reusing forms below take the next values into buffers this object keeps, and hand them
    // out again on the next call: a few allocations for the whole load instead of one vector per row
    // and per call, and each matrix after the first writes into rows (pages) already touched. A
    // result is valid until the next call of kernel() or matrix(): pass it to one setter, as the
    // generated loaders do.

    /** A dense kernel [rows][cols] as stored ([in][out]), as row pointers [cols][rows] for
     *  DenseT::setWeights(T**) ([out][in]): transposed through strips of 16 stored rows, so that
     *  every write fills whole cache lines (a row-by-row scatter writes one line per value). */
    float** kernel(int n_rows, int n_cols)
    {
        const auto rows = static_cast<std::size_t>(n_rows), cols = static_cast<std::size_t>(n_cols);
        constexpr std::size_t strip_rows = 16;
        shape(cols, rows);
        strip.resize(strip_rows * cols);
        for(std::size_t r0 = 0; r0 < rows; r0 += strip_rows)
        {
            const std::size_t height = std::min(strip_rows, rows - r0);
            read(strip.data(), height * cols);
            for(std::size_t c = 0; c < cols; ++c)
            {
                float* column = pool[c].data() + r0;
                for(std::size_t r = 0; r < height; ++r)
                    column[r] = strip[r * cols + c];
            }
        }
        pointers.resize(cols);
        for(std::size_t c = 0; c < cols; ++c)
            pointers[c] = pool[c].data();
        return pointers.data();
    }

    /** [rows][cols] as stored, in nested vectors: the only form LSTMLayerT's and GRULayerT's setters take. */
    const std::vector<std::vector<float>>& matrix(int n_rows, int n_cols)
    {
        shape(static_cast<std::size_t>(n_rows), static_cast<std::size_t>(n_cols));
        for(auto& row : pool)
            read(row.data(), row.size());
        return pool;
    }

    /** The next n values (a bias, for DenseT::setBias(const T*)); valid until the next call of values(). */
    const float* values(int n)
    {
        small.resize(static_cast<std::size_t>(n));
        read(small.data(), small.size());
        return small.data();
    }

    /** A conv1d kernel [kernel][in/groups][out] as Conv1DT::setWeights takes it: [out][in/groups][kernel],
     *  the kernel reversed (file index 0 is the oldest frame; RTNeural's index 0 the newest). */
    std::vector<std::vector<std::vector<float>>> conv1d_kernel(int kernel, int ins, int outs)
    {
        std::vector<float> row(static_cast<std::size_t>(outs));
        std::vector<std::vector<std::vector<float>>> w(static_cast<std::size_t>(outs),
            std::vector<std::vector<float>>(static_cast<std::size_t>(ins), std::vector<float>(static_cast<std::size_t>(kernel))));
        for(int k = 0; k < kernel; ++k)
            for(int i = 0; i < ins; ++i)
            {
                read(row.data(), row.size());
                for(int o = 0; o < outs; ++o)
                    w[static_cast<std::size_t>(o)][static_cast<std::size_t>(i)][static_cast<std::size_t>(kernel - 1 - k)] = row[static_cast<std::size_t>(o)];
            }
        return w;
    }

    /** A conv2d kernel [time][feature][in][out] as Conv2DT::setWeights takes it: [time][out][in][feature]. */
    std::vector<std::vector<std::vector<std::vector<float>>>> conv2d_kernel(int time, int feature, int ins, int outs)
    {
        std::vector<float> row(static_cast<std::size_t>(outs));
        std::vector<std::vector<std::vector<std::vector<float>>>> w(static_cast<std::size_t>(time),
            std::vector<std::vector<std::vector<float>>>(static_cast<std::size_t>(outs),
                std::vector<std::vector<float>>(static_cast<std::size_t>(ins), std::vector<float>(static_cast<std::size_t>(feature)))));
        for(int t = 0; t < time; ++t)
            for(int f = 0; f < feature; ++f)
                for(int i = 0; i < ins; ++i)
                {
                    read(row.data(), row.size());
                    for(int o = 0; o < outs; ++o)
                        w[static_cast<std::size_t>(t)][static_cast<std::size_t>(o)][static_cast<std::size_t>(i)][static_cast<std::size_t>(f)]
                            = row[static_cast<std::size_t>(o)];
                }
        return w;
    }

private:
    /** The pool as rows x cols (a row keeps its capacity when it shrinks). */
    void shape(std::size_t rows, std::size_t cols)
    {
        pool.resize(rows);
        for(auto& row : pool)
            row.resize(cols);
    }

    static void swap_bytes(float* value) noexcept
    {
        unsigned char b[4];
        std::memcpy(b, value, 4);
        const unsigned char swapped[4] = { b[3], b[2], b[1], b[0] };
        std::memcpy(value, swapped, 4);
    }

    const Chunk* chunks;
    std::size_t n_chunks;
    std::size_t chunk = 0, offset = 0, consumed = 0;
    bool little = true;
    std::vector<std::vector<float>> pool; // the rows kernel() and matrix() hand out
    std::vector<float*> pointers;
    std::vector<float> strip, small;
};
} // namespace modelreg_rt
#endif // MODELREG_RT_H_V1

// The allocation of the headers' Model types has a guard of its own: a header written by an older
// exporter (whose helpers above have no ModelAllocation) may come first in a translation unit.
#ifndef MODELREG_RT_MODEL_ALLOCATION_V1
#define MODELREG_RT_MODEL_ALLOCATION_V1

#include <cstdlib>
#include <new>

// Transparent huge pages (Linux, MADV_HUGEPAGE): define MODELREG_NO_HUGE_PAGES in every file to
// allocate every model the ordinary way.
#if defined(__linux__) && !defined(MODELREG_NO_HUGE_PAGES)
#include <stdlib.h> // posix_memalign
#include <sys/mman.h>
#if defined(MADV_HUGEPAGE)
#define MODELREG_RT_HUGE_PAGES 1
#endif
#endif

namespace modelreg_rt
{
/**
 * Where `new Model` puts a header's model (make(), std::make_unique, std::unique_ptr: hosts write
 * nothing different). Why: RTNeural's constructors zero the whole object, so a new model's first
 * touch costs one page fault per 4 KB page (melodytransformer's 2.58 MB: 631 faults, ~2 ms on a
 * VM), and glibc maps a block this large afresh for every new model. On Linux, an object of 2 MB or
 * more goes into 2 MB-aligned memory, rounded up to whole 2 MB, advised MADV_HUGEPAGE: one fault per
 * 2 MB where the kernel's transparent huge pages allow it (`always`, or `madvise`). The cost: up to
 * 2 MB of the last huge page beyond the object. Smaller objects, other platforms and builds with
 * MODELREG_NO_HUGE_PAGES take the ordinary (aligned) operator new. Only make() allocates: off the
 * audio thread, as before.
 */
struct ModelAllocation
{
    /** The size of an x86-64 / arm64 (4 KB base pages) huge page: objects this large or larger use them. */
    static constexpr std::size_t kHugePageBytes = std::size_t(2) << 20;

    /** Whether an object of `size` bytes goes into huge pages in this build. */
    static constexpr bool in_huge_pages(std::size_t size, std::size_t alignment) noexcept
    {
#if defined(MODELREG_RT_HUGE_PAGES)
        return size >= kHugePageBytes && alignment <= kHugePageBytes;
#else
        return (void)size, (void)alignment, false;
#endif
    }

    static void* operator new(std::size_t size) { return allocate(size, __STDCPP_DEFAULT_NEW_ALIGNMENT__); }
    static void* operator new(std::size_t size, std::align_val_t alignment) { return allocate(size, static_cast<std::size_t>(alignment)); }
    // Sized deletes only, so that the compiler passes the size back: it says how the object was allocated.
    static void operator delete(void* p, std::size_t size) noexcept { release(p, size, __STDCPP_DEFAULT_NEW_ALIGNMENT__); }
    static void operator delete(void* p, std::size_t size, std::align_val_t alignment) noexcept
    {
        release(p, size, static_cast<std::size_t>(alignment));
    }

    // A class-scope operator new hides the global forms: these keep `new (where) Model` and
    // `new (std::nothrow) Model` compiling. (A constructor that throws after a nothrow new leaks
    // the memory; RTNeural's compile-time layers' constructors do not throw.)
    static void* operator new(std::size_t, void* where) noexcept { return where; }
    static void operator delete(void*, void*) noexcept {}
    static void* operator new(std::size_t size, const std::nothrow_t&) noexcept
    {
        try { return allocate(size, __STDCPP_DEFAULT_NEW_ALIGNMENT__); } catch(...) { return nullptr; }
    }
    static void* operator new(std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept
    {
        try { return allocate(size, static_cast<std::size_t>(alignment)); } catch(...) { return nullptr; }
    }

private:
    static void* allocate(std::size_t size, std::size_t alignment)
    {
#if defined(MODELREG_RT_HUGE_PAGES)
        if(in_huge_pages(size, alignment))
        {
            const std::size_t rounded = (size + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
            void* p = nullptr; // posix_memalign, not aligned_alloc: Android's libc has it before API 28 too
            if(posix_memalign(&p, kHugePageBytes, rounded) != 0 || p == nullptr)
                throw std::bad_alloc();
            (void)madvise(p, rounded, MADV_HUGEPAGE); // advice: refused (THP `never`, old kernel), the pages stay 4 KB
            return p;
        }
#endif
        if(alignment > __STDCPP_DEFAULT_NEW_ALIGNMENT__)
            return ::operator new(size, std::align_val_t(alignment));
        return ::operator new(size);
    }

    static void release(void* p, std::size_t size, std::size_t alignment) noexcept
    {
        if(p == nullptr)
            return;
#if defined(MODELREG_RT_HUGE_PAGES)
        if(in_huge_pages(size, alignment))
            return std::free(p);
#endif
        if(alignment > __STDCPP_DEFAULT_NEW_ALIGNMENT__)
            return ::operator delete(p, std::align_val_t(alignment));
        ::operator delete(p);
    }
};
} // namespace modelreg_rt
#endif // MODELREG_RT_MODEL_ALLOCATION_V1
