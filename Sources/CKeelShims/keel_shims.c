#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "keel_shims.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int keel_fallocate(int fd, int mode, off_t offset, off_t length) {
    return fallocate(fd, mode, offset, length);
}

int keel_falloc_fl_keep_size(void) { return FALLOC_FL_KEEP_SIZE; }

int keel_ofd_lock(int fd, int exclusive, int wait) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = exclusive ? F_WRLCK : F_RDLCK;
    fl.l_whence = SEEK_SET;
    return fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl);
}

int keel_ofd_unlock(int fd) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_UNLCK;
    fl.l_whence = SEEK_SET;
    return fcntl(fd, F_OFD_SETLK, &fl);
}

#if defined(__x86_64__)
#include <nmmintrin.h>

int keel_crc32c_hw_available(void) { return __builtin_cpu_supports("sse4.2") ? 1 : 0; }

__attribute__((target("sse4.2")))
uint32_t keel_crc32c_hw(uint32_t crc, const void *data, size_t length) {
    const unsigned char *p = (const unsigned char *)data;
    uint64_t c = crc;
    while (length > 0 && ((uintptr_t)p & 7) != 0) { c = _mm_crc32_u8((uint32_t)c, *p++); length--; }
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = _mm_crc32_u64(c, word);
        p += 8; length -= 8;
    }
    while (length > 0) { c = _mm_crc32_u8((uint32_t)c, *p++); length--; }
    return (uint32_t)c;
}
#else
int keel_crc32c_hw_available(void) { return 0; }
uint32_t keel_crc32c_hw(uint32_t crc, const void *data, size_t length) { (void)data; (void)length; return crc; }
#endif

#include <crypt.h>
#include <string.h>
#include <stdlib.h>

int keel_bcrypt_hash(const char *password, int cost, char *out, size_t out_size) {
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    if (crypt_gensalt_rn("$2a$", (unsigned long)cost, NULL, 0, salt, (int)sizeof salt) == NULL) return -1;
    struct crypt_data *data = calloc(1, sizeof *data);
    if (data == NULL) return -1;
    const char *hash = crypt_r(password, salt, data);
    int rc = -1;
    if (hash != NULL && hash[0] == '$' && strlen(hash) < out_size) {
        strcpy(out, hash);
        rc = 0;
    } else {
        errno = EINVAL;
    }
    free(data);
    return rc;
}

int keel_bcrypt_check(const char *password, const char *hash) {
    if (strncmp(hash, "$2", 2) != 0) return -1;
    struct crypt_data *data = calloc(1, sizeof *data);
    if (data == NULL) return -1;
    const char *computed = crypt_r(password, hash, data);
    int rc;
    if (computed == NULL || computed[0] != '$') rc = -1;
    else rc = strlen(computed) == strlen(hash) && memcmp(computed, hash, strlen(hash)) == 0;
    free(data);
    return rc;
}
