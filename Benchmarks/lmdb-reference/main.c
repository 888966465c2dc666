/*
 * lmdb-reference runs keelutl bench's storage workload on C LMDB (liblmdb), driven directly
 * rather than through Keel's LMDB backend, so KeelBolt can be compared with LMDB itself in one
 * script (Benchmarks/compare-lmdb.sh). Same phases (write, read, scan, small-txn), same keys
 * (SplitMix64 with the same seed), same JSON lines, backend "lmdb-c".
 *
 * Buckets are named sub-databases ("bench", "small"), as in Keel's LMDB backend. The environment
 * uses LMDB's defaults (pwrite of dirty pages, fdatasync at commit) except MDB_NOSUBDIR, a 64 GiB
 * map, and MDB_NOSYNC under -no-sync.
 *
 *   cc -O2 -o lmdb-reference Benchmarks/lmdb-reference/main.c -llmdb
 *   lmdb-reference -path /tmp/x.mdb -count 1000000 -batch-size 1000 -key-size 16 -value-size 100 \
 *       -write-mode rnd -read-mode rnd
 */
#define _GNU_SOURCE
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *path = NULL;
static long count = 1000, batch_size = 0, key_size = 8, value_size = 32, small_txns = 10000;
static int write_rnd = 0, read_rnd = 0, no_sync = 0, keep = 0;
/* Map size in GiB (-map-gib; smaller for tools such as valgrind that cannot reserve 64 GiB). */
static long map_gib = 64;
static uint64_t seed = 1;

static uint64_t splitmix_state;
static uint64_t splitmix_next(void) {
    splitmix_state += 0x9E3779B97F4A7C15ULL;
    uint64_t z = splitmix_state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void check(int rc, const char *what) {
    if (rc != MDB_SUCCESS) {
        fprintf(stderr, "error: %s: %s\n", what, mdb_strerror(rc));
        exit(1);
    }
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double phase_cpu;
/* Resident memory when the workload began (libraries, the opened environment). */
static long long start_rss;

static long long current_rss(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long long size = 0, resident = 0;
    if (!f) return 0;
    if (fscanf(f, "%lld %lld", &size, &resident) != 2) resident = 0;
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

static void report(const char *phase, long ops, uint64_t ns, uint64_t *lat, long nlat) {
    double seconds = ns / 1e9;
    printf("{\"backend\":\"lmdb-c\",\"phase\":\"%s\",\"ops\":%ld,\"seconds\":%.6f,\"ops_per_sec\":%.1f",
           phase, ops, seconds, ops / seconds);
    if (nlat > 0) {
        qsort(lat, nlat, sizeof *lat, cmp_u64);
        long i50 = (long)(nlat * 0.5 + 0.999999) - 1, i99 = (long)(nlat * 0.99 + 0.999999) - 1;
        if (i50 < 0) i50 = 0;
        if (i99 < 0) i99 = 0;
        printf(",\"p50_us\":%.1f,\"p99_us\":%.1f", lat[i50] / 1000.0, lat[i99] / 1000.0);
    }
    struct stat st;
    long long size = stat(path, &st) == 0 ? (long long)st.st_size : 0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf(",\"cpu_seconds\":%.6f,\"file_bytes\":%lld,\"peak_rss_bytes\":%lld,\"start_rss_bytes\":%lld}\n",
           cpu_seconds() - phase_cpu, size, (long long)ru.ru_maxrss * 1024, start_rss);
    fflush(stdout);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i += 2) {
        const char *f = argv[i];
        while (*f == '-') f++;
        if (!strcmp(f, "no-sync")) { no_sync = 1; i--; continue; } /* switches, as in keelutl and Go */
        if (!strcmp(f, "keep")) { keep = 1; i--; continue; }
        if (i + 1 >= argc) { fprintf(stderr, "flag %s needs a value\n", argv[i]); return 2; }
        const char *v = argv[i + 1];
        if (!strcmp(f, "path")) path = v;
        else if (!strcmp(f, "count")) count = atol(v);
        else if (!strcmp(f, "batch-size")) batch_size = atol(v);
        else if (!strcmp(f, "key-size")) key_size = atol(v);
        else if (!strcmp(f, "value-size")) value_size = atol(v);
        else if (!strcmp(f, "write-mode")) write_rnd = !strcmp(v, "rnd");
        else if (!strcmp(f, "read-mode")) read_rnd = !strcmp(v, "rnd");
        else if (!strcmp(f, "small-txns")) small_txns = atol(v);
        else if (!strcmp(f, "seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(f, "map-gib")) map_gib = atol(v);
        else if (!strcmp(f, "fill-percent")) { /* LMDB has no fill percent: it splits in the middle */ }
        else { fprintf(stderr, "unknown flag %s\n", argv[i]); return 2; }
    }
    char tmp[256];
    if (!path) {
        snprintf(tmp, sizeof tmp, "/tmp/lmdb-reference-%d.mdb", (int)getpid());
        path = tmp;
    }
    char lock[512];
    snprintf(lock, sizeof lock, "%s-lock", path);
    unlink(path);
    unlink(lock);
    long batch = batch_size == 0 ? count : batch_size;
    if (count <= 0 || count % batch != 0) { fprintf(stderr, "count must be a multiple of batch-size\n"); return 2; }

    start_rss = current_rss();
    unsigned char *keys = calloc((size_t)count, (size_t)key_size);
    splitmix_state = seed;
    for (long i = 0; i < count; i++) {
        unsigned char *k = keys + i * key_size;
        if (write_rnd) {
            for (long j = 0; j < key_size; j += 8) {
                uint64_t r = splitmix_next();
                long n = key_size - j < 8 ? key_size - j : 8;
                memcpy(k + j, &r, (size_t)n); /* little-endian words, as keelutl and bbolt-reference */
            }
        } else {
            long width = key_size < 8 ? key_size : 8;
            uint64_t v = (uint64_t)(i + 1);
            for (long j = width - 1; j >= 0; j--) { k[j] = (unsigned char)v; v >>= 8; }
        }
    }
    unsigned char *value = calloc(1, (size_t)value_size + 1);

    MDB_env *env;
    check(mdb_env_create(&env), "mdb_env_create");
    check(mdb_env_set_mapsize(env, (size_t)map_gib << 30), "mdb_env_set_mapsize");
    check(mdb_env_set_maxdbs(env, 8), "mdb_env_set_maxdbs");
    unsigned flags = MDB_NOSUBDIR | MDB_NOTLS | (no_sync ? MDB_NOSYNC : 0);
    check(mdb_env_open(env, path, flags, 0600), "mdb_env_open");

    uint64_t *lat = malloc(sizeof(uint64_t) * (size_t)(count / batch > small_txns ? count / batch : small_txns) + 8);
    long nlat = 0;
    MDB_txn *txn;
    MDB_dbi dbi;

    /* write */
    phase_cpu = cpu_seconds();
    uint64_t start = now_ns();
    for (long written = 0; written < count; written += batch) {
        uint64_t t0 = now_ns();
        check(mdb_txn_begin(env, NULL, 0, &txn), "mdb_txn_begin");
        check(mdb_dbi_open(txn, "bench", MDB_CREATE, &dbi), "mdb_dbi_open");
        for (long i = written; i < written + batch; i++) {
            MDB_val k = {(size_t)key_size, keys + i * key_size}, v = {(size_t)value_size, value};
            check(mdb_put(txn, dbi, &k, &v, 0), "mdb_put");
        }
        check(mdb_txn_commit(txn), "mdb_txn_commit");
        lat[nlat++] = now_ns() - t0;
    }
    report("write", count, now_ns() - start, lat, nlat);

    /* read */
    long *order = malloc(sizeof(long) * (size_t)count);
    for (long i = 0; i < count; i++) order[i] = i;
    if (read_rnd) {
        splitmix_state = seed + 99;
        for (long i = count - 1; i > 0; i--) {
            long j = (long)(splitmix_next() % (uint64_t)(i + 1));
            long t = order[i]; order[i] = order[j]; order[j] = t;
        }
    }
    phase_cpu = cpu_seconds();
    start = now_ns();
    long found = 0;
    check(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "mdb_txn_begin");
    check(mdb_dbi_open(txn, "bench", 0, &dbi), "mdb_dbi_open");
    for (long n = 0; n < count; n++) {
        MDB_val k = {(size_t)key_size, keys + order[n] * key_size}, v;
        if (mdb_get(txn, dbi, &k, &v) == MDB_SUCCESS) found++;
    }
    mdb_txn_abort(txn);
    if (found == 0) { fprintf(stderr, "no key read back\n"); return 1; }
    report("read", count, now_ns() - start, NULL, 0);

    /* scan */
    phase_cpu = cpu_seconds();
    start = now_ns();
    long seen = 0;
    check(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "mdb_txn_begin");
    MDB_cursor *cur;
    check(mdb_cursor_open(txn, dbi, &cur), "mdb_cursor_open");
    MDB_val k, v;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == MDB_SUCCESS; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) seen++;
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    report("scan", seen, now_ns() - start, NULL, 0);

    /* small-txn */
    if (small_txns > 0) {
        MDB_dbi small;
        check(mdb_txn_begin(env, NULL, 0, &txn), "mdb_txn_begin");
        check(mdb_dbi_open(txn, "small", MDB_CREATE, &small), "mdb_dbi_open");
        check(mdb_txn_commit(txn), "mdb_txn_commit");
        memset(value, 1, (size_t)value_size);
        nlat = 0;
        phase_cpu = cpu_seconds();
        start = now_ns();
        for (long i = 0; i < small_txns; i++) {
            uint64_t t0 = now_ns();
            check(mdb_txn_begin(env, NULL, 0, &txn), "mdb_txn_begin");
            MDB_val sk = {(size_t)key_size, keys + (i % count) * key_size}, sv = {(size_t)value_size, value};
            check(mdb_put(txn, small, &sk, &sv, 0), "mdb_put");
            check(mdb_txn_commit(txn), "mdb_txn_commit");
            lat[nlat++] = now_ns() - t0;
        }
        report("small-txn", small_txns, now_ns() - start, lat, nlat);
    }
    mdb_env_close(env);
    if (!keep) {
        unlink(path);
        unlink(lock);
    }
    return 0;
}
