/* kgem's native kernels: fused CPU loops that torch has no single operator for (see kgem/native/__init__.py).
 *
 * Built on first use with the system's C compiler (-O3, no fast-math: NaN comparisons must keep IEEE semantics)
 * and called through ctypes, which releases the GIL, so Python threads run them on disjoint rows in parallel.
 * Every kernel has a torch fallback with the same results; tests compare the two. */
#include <stdint.h>

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define KGEM_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define KGEM_CLONES
#endif

/* How many of x[0..cols) are greater than, equal to, and not comparable with (NaN) t: one vectorised read. */
KGEM_CLONES
static void count_row(const float *x, int64_t cols, float t, int64_t out[3]) {
    int32_t greater = 0, equal = 0, nan = 0;
    for (int64_t j = 0; j < cols; j++) {
        float v = x[j];
        greater += v > t;
        equal += v == t;
        nan += v != v;
    }
    out[0] = greater;
    out[1] = equal;
    out[2] = nan;
}

/* Rank counts of rows [begin, end) of the block x (row stride `stride`, `cols` columns) against the true scores t.
 * Row i excludes the columns excluded[offsets[i] .. offsets[i+1]) (offsets may be NULL: nothing excluded): they are
 * counted neither as better nor as equal nor as NaN. Writes per row: better (> t), equal (== t, the true answer
 * included), removed (excluded columns) and nan (NaN scores among the counted ones, plus one if t is NaN). */
void kgem_count_ranks(const float *x, int64_t stride, int64_t cols, int64_t begin, int64_t end, const float *t,
                      const int64_t *offsets, const int64_t *excluded, int64_t *better, int64_t *equal,
                      int64_t *removed, int64_t *nan) {
    int64_t counts[3];
    for (int64_t i = begin; i < end; i++) {
        const float *row = x + i * stride;
        float ti = t[i];
        count_row(row, cols, ti, counts);
        int64_t greater = counts[0], same = counts[1], bad = counts[2] + (ti != ti), skipped = 0;
        if (offsets) {
            for (int64_t p = offsets[i]; p < offsets[i + 1]; p++) {  /* the row is in the cache: cheap lookups */
                float v = row[excluded[p]];
                greater -= v > ti;
                same -= v == ti;
                bad -= v != v;
                skipped++;
            }
        }
        better[i] = greater;
        equal[i] = same;
        removed[i] = skipped;
        nan[i] = bad;
    }
}

/* x = -sqrt(max(x, 0)) in place (NaN stays NaN): a squared distance finished into a score in one pass. */
KGEM_CLONES
void kgem_neg_sqrt(float *x, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        float v = x[j];
        v = v < 0 ? 0 : v;
        x[j] = -__builtin_sqrtf(v);
    }
}
