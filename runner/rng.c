/*
 * rng.c -- the seeded random generator: xoshiro256** seeded by splitmix64.
 *
 * Every random choice in a run (shuffles, splits, initial weights) draws from
 * a generator derived from the pipeline seed, so a run repeats bit for bit.
 */
#include "mp.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void mp_rng_seed(mp_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t mp_rng_next(mp_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double mp_rng_uniform(mp_rng *r) {
    return (double)(mp_rng_next(r) >> 11) * 0x1.0p-53;
}

double mp_rng_normal(mp_rng *r) {
    /* Box-Muller; u1 in (0, 1] so the log is finite. */
    double u1 = 1.0 - mp_rng_uniform(r);
    double u2 = mp_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

size_t mp_rng_below(mp_rng *r, size_t n) {
    /* Lemire's rejection keeps the result unbiased. */
    uint64_t x = mp_rng_next(r);
    __uint128_t m = (__uint128_t)x * n;
    uint64_t l = (uint64_t)m;
    if (l < n) {
        uint64_t t = (0 - (uint64_t)n) % n;
        while (l < t) {
            x = mp_rng_next(r);
            m = (__uint128_t)x * n;
            l = (uint64_t)m;
        }
    }
    return (size_t)(m >> 64);
}

void mp_rng_shuffle(mp_rng *r, size_t *v, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = mp_rng_below(r, i);
        size_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}
