// An allocation counter for benchmarks, loaded with LD_PRELOAD (never linked into Keel):
// malloc, calloc, realloc, posix_memalign, aligned_alloc and memalign count each call and
// forward to glibc. `keel_malloc_count` is looked up with dlsym by the benchmark.
#pragma once
unsigned long long keel_malloc_count(void);
