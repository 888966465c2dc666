// Small C helpers for Keel's I/O layer: calls that Swift's Glibc module does not export
// (they need _GNU_SOURCE) and the hardware CRC-32C instruction.
#ifndef KEEL_SHIMS_H
#define KEEL_SHIMS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// fallocate(2). Returns 0 or -1 with errno set.
int keel_fallocate(int fd, int mode, off_t offset, off_t length);
/// The FALLOC_FL_KEEP_SIZE flag.
int keel_falloc_fl_keep_size(void);
/// fcntl(F_OFD_SETLK / F_OFD_SETLKW) over the whole file. exclusive: write lock, else read lock.
/// wait: 1 blocks. Returns 0 or -1 with errno set.
int keel_ofd_lock(int fd, int exclusive, int wait);
/// Releases an OFD lock taken with keel_ofd_lock.
int keel_ofd_unlock(int fd);
/// 1 if the CPU has the SSE4.2 CRC32 instruction.
int keel_crc32c_hw_available(void);
/// CRC-32C update with the hardware instruction. `crc` is the raw register (not inverted).
/// Only call when keel_crc32c_hw_available() returned 1.
uint32_t keel_crc32c_hw(uint32_t crc, const void *data, size_t length);

/// A bcrypt hash ("$2a$<cost>$…", as Go's bcrypt and etcd write them) of `password` with a
/// fresh random salt, through the system's libcrypt. Returns 0, or -1 with errno set.
int keel_bcrypt_hash(const char *password, int cost, char *out, size_t out_size);
/// 1 when `password` matches the bcrypt `hash` ($2a$, $2b$ or $2y$), 0 when not, -1 when the
/// hash is not one libcrypt reads.
int keel_bcrypt_check(const char *password, const char *hash);

/// Asks the CPU to start loading the cache line holding `address` (a hint: no effect on results,
/// and no fault for any address).
static inline void keel_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

#endif
