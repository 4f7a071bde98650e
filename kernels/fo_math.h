/* fusedopt: branch-free exp and log1p for the loss kernels.
 *
 * Only what sigmoid cross-entropy needs: e = exp(-a) for a >= 0 (or NaN) and log1p(e)
 * for e in [0, 1].  No libm call, no table, no branch: gcc vectorises loops that use them
 * under every target the dispatcher compiles, and because contraction is off
 * (-ffp-contract=off) every path rounds identically.
 *
 * exp: Cody-Waite range reduction a*log2(e) = n + r/ln2 with ln2 split in a hi part
 * (n*hi exact) and a lo part; n rounded with the 1.5*2^k "magic number" addition; exp(r)
 * for |r| <= ln2/2 by a polynomial (degree 6 fitted for float, Taylor degree 13 for
 * double; below 0.1 ulp); 2^n applied as 2^(n+K) (exact: a normal power of two times p)
 * then 2^-K, so that results that are subnormal are rounded once and correctly.
 * log1p: for e >= 1/2, log1p(e) = ln2 + log1p((e-1)/2) with (e-1)/2 exact (Sterbenz);
 * then log1p(f) = f - s*(f - R) with s = f/(2+f), |s| <= 0.2, and R the tail of the
 * odd series of 2*atanh(s) (to s^11 for float, s^23 for double).
 * Measured accuracy is in tests/test_math.py (ulps against float64 / long double NumPy).
 */
#ifndef FO_MATH_H
#define FO_MATH_H

#include <stdint.h>
#include <string.h>

static inline uint32_t fo_bits_f32(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static inline float fo_from_bits_f32(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }
static inline uint64_t fo_bits_f64(double x) { uint64_t u; memcpy(&u, &x, 8); return u; }
static inline double fo_from_bits_f64(uint64_t u) { double x; memcpy(&x, &u, 8); return x; }

/* exp(-a), a >= 0 or NaN (NaN propagates; +inf gives 0).
 * float: exp(r) by a degree-6 polynomial fitted (weighted least squares, Lawson
 * iterations, coefficients rounded to float) to relative error 3.8e-9 on |r| <= ln2/2.
 * The scale comes straight from the rounding addition: with the magic number
 * 1.5*2^23 + 127 + K, the low 9 bits of bits(t) are n + 127 + K, so bits(t) << 23 is the
 * float 2^(n+K) while n + 127 + K is in [1, 254].  K = 65 keeps the magic number even,
 * so n (ties to even) is the same as with 1.5*2^23: the results are bit for bit those of
 * the two-factor scaling used before (checked over every float input). */
static inline float fo_exp_neg_f32(float a)
{
    const float magic = 12583104.0f;            /* 1.5 * 2^23 + 127 + 65 */
    a = a > 110.0f ? 110.0f : a;                /* exp(-110) underflows to 0 */
    /* with z = -a: t = z/ln2 + magic, n = round(z/ln2), r = (z - n*ln2_hi) - n*ln2_lo,
     * written with a and negated constants (the same values, one negation less) */
    float t = a * -1.44269504088896341f + magic;
    float nf = t - magic;
    float r = (nf * -0.693359375f - a) - nf * -2.12194440e-4f;
    float p = 0.001381461275741458f;
    p = p * r + 0.008368710055947304f;
    p = p * r + 0.04166838899254799f;
    p = p * r + 0.1666652113199234f;
    p = p * r + 0.4999999403953552f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    /* n >= -159, so bits(t) << 23 is the normal float 2^(n+65): p * 2^(n+65) is exact and
     * the multiplication by 2^-65 rounds once, also where the result is subnormal. */
    return (p * fo_from_bits_f32(fo_bits_f32(t) << 23)) * 0x1p-65f;
}

static inline double fo_exp_neg_f64(double a)
{
    const double magic = 6755399441056896.0;    /* 1.5 * 2^52 + 1023 + 129 */
    a = a > 760.0 ? 760.0 : a;                  /* exp(-760) underflows to 0 */
    double t = a * -1.4426950408889634074 + magic;   /* as in the float version */
    double nf = t - magic;
    double r = (nf * -6.93147180369123816490e-01 - a) - nf * 1.90821492927058770002e-10;
    double p = 1.0 / 6227020800.0;              /* 1/13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* n >= -1097: bits(t) << 52 is the normal double 2^(n+129) (see the float version). */
    return (p * fo_from_bits_f64(fo_bits_f64(t) << 52)) * 0x1p-129;
}

/* log1p(e) for e in [0, 1] (NaN propagates).
 * With s = f/(2+f): log1p(f) = 2*atanh(s) = 2s + s*R, R = 2*(s^2/3 + s^4/5 + ...), and
 * 2s = f - s*f, so log1p(f) = f - s*(f - R): f is exact and the rounding of s only enters
 * a correction at most 0.2*f. */
static inline float fo_log1p_finish_f32(float f, float s, int big)
{
    float s2 = s * s;
    float q = 2.0f / 11.0f;
    q = q * s2 + 2.0f / 9.0f;
    q = q * s2 + 2.0f / 7.0f;
    q = q * s2 + 2.0f / 5.0f;
    q = q * s2 + 2.0f / 3.0f;
    float r = q * s2;
    float lf = f - s * (f - r);
    float hi = big ? 0.693147182464599609375f : 0.0f;
    float lo = big ? -1.9046542999e-09f : 0.0f;
    return hi + (lf + lo);
}

static inline float fo_log1p_unit_f32(float e)
{
    int big = e >= 0.5f;
    float f = big ? (e - 1.0f) * 0.5f : e;      /* exact */
    return fo_log1p_finish_f32(f, f / (2.0f + f), big);
}

static inline double fo_log1p_finish_f64(double f, double s, int big)
{
    double s2 = s * s;
    double q = 2.0 / 23.0;
    q = q * s2 + 2.0 / 21.0;
    q = q * s2 + 2.0 / 19.0;
    q = q * s2 + 2.0 / 17.0;
    q = q * s2 + 2.0 / 15.0;
    q = q * s2 + 2.0 / 13.0;
    q = q * s2 + 2.0 / 11.0;
    q = q * s2 + 2.0 / 9.0;
    q = q * s2 + 2.0 / 7.0;
    q = q * s2 + 2.0 / 5.0;
    q = q * s2 + 2.0 / 3.0;
    double r = q * s2;
    double lf = f - s * (f - r);
    double hi = big ? 6.93147180559945286227e-01 : 0.0;
    double lo = big ? 2.31904681384629955842e-17 : 0.0;
    return hi + (lf + lo);
}

static inline double fo_log1p_unit_f64(double e)
{
    int big = e >= 0.5;
    double f = big ? (e - 1.0) * 0.5 : e;       /* exact */
    return fo_log1p_finish_f64(f, f / (2.0 + f), big);
}

#endif
