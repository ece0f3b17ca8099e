// An intrusive doubly linked list: "one state, one list". An object that
// lives in state lists embeds a ListNode; moving it between lists is O(1)
// and gauges read size().
#pragma once

#include <cassert>
#include <cstddef>

namespace sqlmux::pool {

struct ListNode {
  ListNode* prev = nullptr;
  ListNode* next = nullptr;
  void* list = nullptr;  // the list that holds it, for assertions
  void* obj = nullptr;   // the object that embeds it
};

template <typename T, ListNode T::*Node>
class IntrusiveList {
 public:
  IntrusiveList() { head_.prev = head_.next = &head_; }
  IntrusiveList(const IntrusiveList&) = delete;
  IntrusiveList& operator=(const IntrusiveList&) = delete;

  void push_back(T* obj) {
    ListNode* n = &(obj->*Node);
    assert(n->list == nullptr);
    n->prev = head_.prev;
    n->next = &head_;
    head_.prev->next = n;
    head_.prev = n;
    n->list = this;
    n->obj = obj;
    ++size_;
  }
  void remove(T* obj) {
    ListNode* n = &(obj->*Node);
    assert(n->list == this);
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = nullptr;
    n->list = nullptr;
    --size_;
  }
  [[nodiscard]] bool contains(const T* obj) const { return (obj->*Node).list == this; }
  [[nodiscard]] size_t size() const { return size_; }
  [[nodiscard]] bool empty() const { return size_ == 0; }
  [[nodiscard]] T* front() const { return empty() ? nullptr : owner(head_.next); }

  // Calls f(obj) for each element; f may remove the element it is given.
  template <typename F>
  void for_each(F&& f) {
    ListNode* n = head_.next;
    while (n != &head_) {
      ListNode* next = n->next;
      f(owner(n));
      n = next;
    }
  }

 private:
  static T* owner(const ListNode* n) { return static_cast<T*>(n->obj); }
  ListNode head_;
  size_t size_ = 0;
};

}  // namespace sqlmux::pool
