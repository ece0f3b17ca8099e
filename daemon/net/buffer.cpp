#include "daemon/net/buffer.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <new>

namespace sqlmux {

namespace {

constexpr size_t kMinAlloc = 4096;

// Storage blocks are powers of two from 4 KiB. Each thread keeps a few freed
// blocks of each size up to 256 KiB for its next buffer, so that relaying a
// message (a buffer that fills and empties again) costs no malloc/free.
class BlockCache {
 public:
  static constexpr int kClasses = 7;  // 4 KiB .. 256 KiB
  static constexpr int kPerClass = 16;

  BlockCache() = default;
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;
  ~BlockCache() {
    for (int c = 0; c < kClasses; ++c) {
      for (int i = 0; i < count_[c]; ++i) std::free(blocks_[c][i]);
    }
  }

  uint8_t* take(size_t size) {
    const int c = size_class(size);
    if (c >= 0 && count_[c] > 0) return blocks_[c][--count_[c]];
    return static_cast<uint8_t*>(std::malloc(size));
  }

  void give(uint8_t* p, size_t size) {
    const int c = size_class(size);
    if (c >= 0 && count_[c] < kPerClass) {
      blocks_[c][count_[c]++] = p;
      return;
    }
    std::free(p);
  }

 private:
  static int size_class(size_t size) {
    // A power of two from kMinAlloc: its bit's position, counted from kMinAlloc's.
    if (size < kMinAlloc || (size & (size - 1)) != 0) return -1;
    const int c = std::countr_zero(size) - std::countr_zero(kMinAlloc);
    return c < kClasses ? c : -1;
  }

  uint8_t* blocks_[kClasses][kPerClass] = {};
  int count_[kClasses] = {};
};

thread_local BlockCache t_blocks;

}  // namespace

Buffer::~Buffer() {
  if (data_ != nullptr) t_blocks.give(data_, cap_);
}

uint8_t* Buffer::reserve(size_t min) {
  if (cap_ - wpos_ >= min) return data_ + wpos_;
  size_t used = wpos_ - rpos_;
  if (rpos_ > 0 && cap_ - used >= min) {
    std::memmove(data_, data_ + rpos_, used);
    rpos_ = 0;
    wpos_ = used;
    return data_ + wpos_;
  }
  // The capacity doubled (from kMinAlloc) until it holds used + min: both
  // are powers of two.
  const size_t want = std::max(cap_ == 0 ? kMinAlloc : cap_, std::bit_ceil(used + min));
  uint8_t* fresh = t_blocks.take(want);
  if (fresh == nullptr) throw std::bad_alloc();
  if (used > 0) std::memcpy(fresh, data_ + rpos_, used);
  if (data_ != nullptr) t_blocks.give(data_, cap_);
  data_ = fresh;
  cap_ = want;
  rpos_ = 0;
  wpos_ = used;
  return data_ + wpos_;
}

void Buffer::append(const void* p, size_t n) {
  if (n == 0) return;
  std::memcpy(reserve(n), p, n);
  wpos_ += n;
}

void Buffer::shrink_if_empty() {
  if (rpos_ == wpos_ && data_ != nullptr) {
    t_blocks.give(data_, cap_);
    data_ = nullptr;
    cap_ = rpos_ = wpos_ = 0;
  }
}

}  // namespace sqlmux
