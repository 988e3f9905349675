#pragma once
/// RAII owners for device memory, pinned host memory, streams, events and graphs.

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "cuda/cuda_check.hpp"

namespace kvserve::cuda {

/// Owns `count` elements of T in device memory (uninitialised).
template <class T>
class device_buffer {
 public:
  device_buffer() = default;
  ~device_buffer() { reset(); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  device_buffer(device_buffer&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), count_(std::exchange(o.count_, 0)) {}
  device_buffer& operator=(device_buffer&& o) noexcept {
    if (this != &o) {
      reset();
      ptr_ = std::exchange(o.ptr_, nullptr);
      count_ = std::exchange(o.count_, 0);
    }
    return *this;
  }

  [[nodiscard]] status allocate(std::size_t count, const char* what = "cudaMalloc") {
    reset();
    if (count == 0) return status::ok();
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, count * sizeof(T));
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      return cuda_status(e, what);
    }
    ptr_ = static_cast<T*>(p);
    count_ = count;
    return status::ok();
  }
  void reset() {
    if (ptr_) (void)cudaFree(ptr_);
    ptr_ = nullptr;
    count_ = 0;
  }
  T* get() const { return ptr_; }
  std::size_t size() const { return count_; }
  std::size_t bytes() const { return count_ * sizeof(T); }

 private:
  T* ptr_ = nullptr;
  std::size_t count_ = 0;
};

/// Owns `count` elements of T in page-locked host memory (for asynchronous copies).
template <class T>
class pinned_buffer {
 public:
  pinned_buffer() = default;
  ~pinned_buffer() { reset(); }
  pinned_buffer(const pinned_buffer&) = delete;
  pinned_buffer& operator=(const pinned_buffer&) = delete;

  [[nodiscard]] status allocate(std::size_t count) {
    reset();
    if (count == 0) return status::ok();
    void* p = nullptr;
    KVSERVE_CUDA_TRY(cudaMallocHost(&p, count * sizeof(T)));
    ptr_ = static_cast<T*>(p);
    count_ = count;
    return status::ok();
  }
  void reset() {
    if (ptr_) (void)cudaFreeHost(ptr_);
    ptr_ = nullptr;
    count_ = 0;
  }
  T* get() const { return ptr_; }
  T& operator[](std::size_t i) const { return ptr_[i]; }
  std::size_t size() const { return count_; }

 private:
  T* ptr_ = nullptr;
  std::size_t count_ = 0;
};

/// Owns a non-blocking stream.
class cuda_stream {
 public:
  cuda_stream() = default;
  ~cuda_stream() {
    if (s_) (void)cudaStreamDestroy(s_);
  }
  cuda_stream(const cuda_stream&) = delete;
  cuda_stream& operator=(const cuda_stream&) = delete;
  [[nodiscard]] status create() {
    KVSERVE_CUDA_TRY(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
    return status::ok();
  }
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

/// Owns an event.
class cuda_event {
 public:
  cuda_event() = default;
  ~cuda_event() {
    if (e_) (void)cudaEventDestroy(e_);
  }
  cuda_event(const cuda_event&) = delete;
  cuda_event& operator=(const cuda_event&) = delete;
  [[nodiscard]] status create(unsigned flags = cudaEventDefault) {
    KVSERVE_CUDA_TRY(cudaEventCreateWithFlags(&e_, flags));
    return status::ok();
  }
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

/// Owns an instantiated CUDA graph.
class cuda_graph_exec {
 public:
  cuda_graph_exec() = default;
  ~cuda_graph_exec() { reset(); }
  cuda_graph_exec(const cuda_graph_exec&) = delete;
  cuda_graph_exec& operator=(const cuda_graph_exec&) = delete;
  cuda_graph_exec(cuda_graph_exec&& o) noexcept : g_(std::exchange(o.g_, nullptr)) {}
  void reset(cudaGraphExec_t g = nullptr) {
    if (g_) (void)cudaGraphExecDestroy(g_);
    g_ = g;
  }
  cudaGraphExec_t get() const { return g_; }
  explicit operator bool() const { return g_ != nullptr; }

 private:
  cudaGraphExec_t g_ = nullptr;
};

/// Owns a (captured, not instantiated) CUDA graph.
class cuda_graph {
 public:
  cuda_graph() = default;
  ~cuda_graph() {
    if (g_) (void)cudaGraphDestroy(g_);
  }
  cuda_graph(const cuda_graph&) = delete;
  cuda_graph& operator=(const cuda_graph&) = delete;
  cudaGraph_t* out() { return &g_; }
  cudaGraph_t get() const { return g_; }

 private:
  cudaGraph_t g_ = nullptr;
};

}  // namespace kvserve::cuda
