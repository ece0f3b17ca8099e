// A byte buffer with explicit ranges:
//
//   [0, rpos)      consumed (parsed and relayed, or sent)
//   [rpos, wpos)   received / queued, not yet consumed
//   [wpos, cap)    free
//
// Storage is allocated on first use and given back when the buffer empties,
// so an idle connection holds no buffer memory.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>

namespace sqlmux {

class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();

  [[nodiscard]] const uint8_t* data() const { return data_ + rpos_; }
  [[nodiscard]] uint8_t* data() { return data_ + rpos_; }
  [[nodiscard]] size_t size() const { return wpos_ - rpos_; }
  [[nodiscard]] bool empty() const { return wpos_ == rpos_; }
  [[nodiscard]] size_t capacity() const { return cap_; }

  // Free space at the end, at least `min` bytes (compacting or growing).
  uint8_t* reserve(size_t min);
  [[nodiscard]] size_t writable() const { return cap_ - wpos_; }
  void commit(size_t n) {
    assert(wpos_ + n <= cap_);
    wpos_ += n;
  }
  void consume(size_t n) {
    assert(n <= size());
    rpos_ += n;
    if (rpos_ == wpos_) rpos_ = wpos_ = 0;
  }
  void append(const void* p, size_t n);
  // Gives the storage back when nothing is buffered.
  void shrink_if_empty();

 private:
  uint8_t* data_ = nullptr;
  size_t cap_ = 0;
  size_t rpos_ = 0;
  size_t wpos_ = 0;
};

}  // namespace sqlmux
