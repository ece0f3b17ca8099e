#include "daemon/buffer.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace sqlmux {

namespace {
constexpr size_t kMinAlloc = 4096;
}

Buffer::~Buffer() {
  std::free(data_);
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
  size_t want = cap_ == 0 ? kMinAlloc : cap_;
  while (want - used < min) want *= 2;
  auto* fresh = static_cast<uint8_t*>(std::malloc(want));
  if (fresh == nullptr) throw std::bad_alloc();
  if (used > 0) std::memcpy(fresh, data_ + rpos_, used);
  std::free(data_);
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
    std::free(data_);
    data_ = nullptr;
    cap_ = rpos_ = wpos_ = 0;
  }
}

}  // namespace sqlmux
