// Work over samples split across std::threads. Every sample is computed from its own inputs and
// its global index alone, so results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace mwm {
namespace detail {

// Calls body(begin, end) over contiguous chunks of [0, count) on up to `threads` threads
// (0: hardware concurrency). The first exception thrown by any chunk is rethrown.
template <typename Body>
void parallel_chunks(std::int64_t count, int threads, Body body) {
  if (count <= 0) return;
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const std::int64_t workers = std::min<std::int64_t>(threads, count);
  if (workers == 1) {
    body(std::int64_t(0), count);
    return;
  }
  std::exception_ptr failure;
  std::mutex failure_mutex;
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(workers));
  for (std::int64_t t = 0; t < workers; ++t) {
    const std::int64_t begin = count * t / workers;
    const std::int64_t end = count * (t + 1) / workers;
    pool.emplace_back([&, begin, end] {
      try {
        body(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure) failure = std::current_exception();
      }
    });
  }
  for (auto& thread : pool) thread.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace detail
}  // namespace mwm
