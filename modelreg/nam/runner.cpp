// modelreg's NAM runner: runs a .nam file in NeuralAmpModelerCore (NAM's C++ engine) as a plugin
// does: nam::get_dsp(path), DSP::Reset(sample_rate, block), then DSP::process() block by block.
//
// Built by modelreg/nam/engine.py against the engine's sources (MODELREG_NAM_CORE); one process
// per request, numbers as little-endian float64 on stdin/stdout (what NAM_SAMPLE is by default).
//
//   runner --selftest
//       "modelreg-nam-runner PROTOCOL" then "selftest ok" (or "selftest failed: ...").
//   runner run FILE SAMPLE_RATE BLOCK ROWS FRAMES IN OUT
//       stdin: ROWS x FRAMES x IN samples; each row is its own stream: the file is loaded afresh
//       (get_dsp), Reset() (which prewarms, as a plugin's reset does), then processed in blocks of
//       BLOCK frames. stdout: ROWS x FRAMES x OUT samples.
//   runner time FILE SAMPLE_RATE BLOCK SECONDS IN
//       stdin: one block, BLOCK x IN samples. Loads and resets the model, then calls process()
//       on that block again and again (state carried) for SECONDS; stdout: "load_ms X",
//       "warmup N", then one line per timed block: its wall time in nanoseconds.
//
// Errors: one line "error: ..." on stderr, exit status 2.

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "NAM/dsp.h"
#include "NAM/get_dsp.h"

#ifndef MODELREG_NAM_PROTOCOL
  #define MODELREG_NAM_PROTOCOL 1
#endif

namespace
{

[[noreturn]] void fail(const std::string& message)
{
  std::cerr << "error: " << message << std::endl;
  std::exit(2);
}

std::vector<double> read_samples(size_t count)
{
  std::vector<double> values(count);
  if (count > 0 && std::fread(values.data(), sizeof(double), count, stdin) != count)
    fail("stdin ended before " + std::to_string(count) + " samples were read");
  return values;
}

void write_samples(const std::vector<double>& values)
{
  if (!values.empty() && std::fwrite(values.data(), sizeof(double), values.size(), stdout) != values.size())
    fail("cannot write the output samples");
  std::fflush(stdout);
}

int to_int(const char* text, const char* what)
{
  try
  {
    return std::stoi(text);
  }
  catch (const std::exception&)
  {
    fail(std::string("not an integer for ") + what + ": " + text);
  }
}

std::unique_ptr<nam::DSP> load(const std::string& path, int in, int out)
{
  std::unique_ptr<nam::DSP> dsp;
  try
  {
    dsp = nam::get_dsp(std::filesystem::path(path));
  }
  catch (const std::exception& exc)
  {
    fail(std::string("nam::get_dsp refused the file: ") + exc.what());
  }
  if (dsp == nullptr)
    fail("nam::get_dsp returned no model");
  if (dsp->NumInputChannels() != in || dsp->NumOutputChannels() != out)
    fail("the model has " + std::to_string(dsp->NumInputChannels()) + " input and "
         + std::to_string(dsp->NumOutputChannels()) + " output channels, expected " + std::to_string(in) + " and "
         + std::to_string(out));
  return dsp;
}

// Channel-major buffers, as a plugin hands them (input[channel][frame]).
struct Buffers
{
  std::vector<std::vector<NAM_SAMPLE>> in, out;
  std::vector<NAM_SAMPLE*> in_ptrs, out_ptrs;
  Buffers(int in_channels, int out_channels, int block)
  : in(in_channels, std::vector<NAM_SAMPLE>(block))
  , out(out_channels, std::vector<NAM_SAMPLE>(block))
  {
    for (auto& channel : in)
      in_ptrs.push_back(channel.data());
    for (auto& channel : out)
      out_ptrs.push_back(channel.data());
  }
};

int run(int argc, char** argv)
{
  if (argc != 9)
    fail("usage: run FILE SAMPLE_RATE BLOCK ROWS FRAMES IN OUT");
  const std::string path = argv[2];
  const double sample_rate = std::stod(argv[3]);
  const int block = to_int(argv[4], "BLOCK");
  const int rows = to_int(argv[5], "ROWS");
  const int frames = to_int(argv[6], "FRAMES");
  const int in = to_int(argv[7], "IN");
  const int out = to_int(argv[8], "OUT");
  if (block < 1 || rows < 0 || frames < 0 || in < 1 || out < 1)
    fail("BLOCK, IN and OUT must be positive, ROWS and FRAMES not negative");
  const std::vector<double> input = read_samples(size_t(rows) * frames * in);
  std::vector<double> output(size_t(rows) * frames * out);
  Buffers buffers(in, out, block);
  for (int row = 0; row < rows; row++)
  {
    // A fresh load per stream: Reset() prewarms from the current state, it does not restore the file's.
    auto dsp = load(path, in, out);
    dsp->Reset(sample_rate, block);
    for (int start = 0; start < frames; start += block)
    {
      const int count = std::min(block, frames - start);
      for (int c = 0; c < in; c++)
        for (int i = 0; i < count; i++)
          buffers.in[c][i] = (NAM_SAMPLE)input[(size_t(row) * frames + start + i) * in + c];
      dsp->process(buffers.in_ptrs.data(), buffers.out_ptrs.data(), count);
      for (int c = 0; c < out; c++)
        for (int i = 0; i < count; i++)
          output[(size_t(row) * frames + start + i) * out + c] = (double)buffers.out[c][i];
    }
  }
  write_samples(output);
  return 0;
}

int time_blocks(int argc, char** argv)
{
  using clock = std::chrono::steady_clock;
  if (argc != 7)
    fail("usage: time FILE SAMPLE_RATE BLOCK SECONDS IN");
  const std::string path = argv[2];
  const double sample_rate = std::stod(argv[3]);
  const int block = to_int(argv[4], "BLOCK");
  const double seconds = std::stod(argv[5]);
  const int in = to_int(argv[6], "IN");
  if (block < 1 || in < 1 || !(seconds > 0))
    fail("BLOCK, SECONDS and IN must be positive");
  const std::vector<double> input = read_samples(size_t(block) * in);
  const auto load_start = clock::now();
  std::unique_ptr<nam::DSP> dsp;
  try
  {
    dsp = nam::get_dsp(std::filesystem::path(path));
  }
  catch (const std::exception& exc)
  {
    fail(std::string("nam::get_dsp refused the file: ") + exc.what());
  }
  const double load_ms = std::chrono::duration<double, std::milli>(clock::now() - load_start).count();
  if (dsp->NumInputChannels() != in)
    fail("the model has " + std::to_string(dsp->NumInputChannels()) + " input channels, expected " + std::to_string(in));
  dsp->Reset(sample_rate, block);
  Buffers buffers(in, dsp->NumOutputChannels(), block);
  for (int c = 0; c < in; c++)
    for (int i = 0; i < block; i++)
      buffers.in[c][i] = (NAM_SAMPLE)input[size_t(i) * in + c];
  // Warm-up: caches and branch predictors, as a host's first callbacks do (a tenth of the window).
  const auto warm_until = clock::now() + std::chrono::duration<double>(seconds / 10);
  int warmup = 0;
  while (warmup < 20 || clock::now() < warm_until)
  {
    dsp->process(buffers.in_ptrs.data(), buffers.out_ptrs.data(), block);
    warmup++;
  }
  std::vector<int64_t> samples;
  const auto until = clock::now() + std::chrono::duration<double>(seconds);
  while (samples.size() < 200 || clock::now() < until)
  {
    const auto start = clock::now();
    dsp->process(buffers.in_ptrs.data(), buffers.out_ptrs.data(), block);
    samples.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - start).count());
  }
  std::printf("load_ms %.6f\nwarmup %d\n", load_ms, warmup);
  for (const auto value : samples)
    std::printf("%lld\n", (long long)value);
  return 0;
}

// A one-layer LSTM whose weights are all zero but the head's bias: the output is that bias
// whatever the input. Proves the engine's loader and LSTM are linked in (static registration).
int selftest()
{
  std::printf("modelreg-nam-runner %d\n", MODELREG_NAM_PROTOCOL);
  nlohmann::json config = {{"version", "0.5.4"},
                           {"architecture", "LSTM"},
                           {"config", {{"input_size", 1}, {"hidden_size", 1}, {"num_layers", 1}}},
                           {"sample_rate", 48000}};
  // 4x2 W, 4 b, h0, c0, head weight, head bias
  std::vector<float> weights(8 + 4 + 1 + 1 + 1, 0.0f);
  weights.push_back(0.25f);
  config["weights"] = weights;
  try
  {
    auto dsp = nam::get_dsp(config);
    Buffers buffers(1, 1, 4);
    for (int i = 0; i < 4; i++)
      buffers.in[0][i] = 0.5 * i;
    dsp->Reset(48000.0, 4);
    dsp->process(buffers.in_ptrs.data(), buffers.out_ptrs.data(), 4);
    for (int i = 0; i < 4; i++)
      if (std::fabs(buffers.out[0][i] - 0.25) > 1e-7)
      {
        std::printf("selftest failed: output %g, expected 0.25\n", (double)buffers.out[0][i]);
        return 1;
      }
  }
  catch (const std::exception& exc)
  {
    std::printf("selftest failed: %s\n", exc.what());
    return 1;
  }
  std::printf("selftest ok\n");
  return 0;
}

} // namespace

int main(int argc, char** argv)
{
  if (argc >= 2 && std::strcmp(argv[1], "--selftest") == 0)
    return selftest();
  if (argc >= 2 && std::strcmp(argv[1], "run") == 0)
    return run(argc, argv);
  if (argc >= 2 && std::strcmp(argv[1], "time") == 0)
    return time_blocks(argc, argv);
  fail("usage: runner --selftest | run ... | time ...");
}
