/* fusedopt: gradient norms for clipping (template over FO_T, see fo_common.h).
 *
 * One block of one gradient: the sum of g*g (FO_NORM_SQ), of |g| (FO_NORM_ABS) or of
 * |g|^p (FO_NORM_POW), in double, element k to lane k % FO_LANES, lanes folded in a fixed
 * order; or the largest |g| (FO_NORM_MAX), NaN when any element is NaN.  The driver adds
 * (or takes the max of) the blocks of every tensor in tensor and block order, so a norm
 * does not depend on the thread count or the CPU path.  The clip coefficient itself is
 * applied inside each optimizer's update (its fo_<name>_args' grad_scale).
 */
#ifdef FO_API
/* The interface (fusedopt.h includes it). */
enum fo_norm_kind { FO_NORM_SQ = 0, FO_NORM_ABS = 1, FO_NORM_POW = 2, FO_NORM_MAX = 3 };
/* Over a list of gradients: the sum over every element of g*g, |g| or |g|^p, or max |g|
 * (NaN propagates). */
double fo_grad_norm(int dtype, int ntensors, const void *const *gs, const fo_index *ns,
                    int kind, double p, int n_threads);
#else
#include <math.h>

FO_INLINE void FO_NAME(norm_loop)(const FO_T *restrict g, fo_index n, double p, double *acc,
                                  const int kind)
{
    fo_index i = 0;
#define FO_NORM_ELEM(k, LANE)                                                       \
    do {                                                                            \
        const double x = (double)g[k];                                              \
        if (kind == FO_NORM_SQ) acc[LANE] += x * x;                                 \
        else if (kind == FO_NORM_ABS) acc[LANE] += fabs(x);                         \
        else if (kind == FO_NORM_POW) acc[LANE] += pow(fabs(x), p);                 \
        else { const double a = fabs(x);                                            \
               acc[LANE] = (a > acc[LANE] || a != a) && acc[LANE] == acc[LANE] ?    \
                   a : acc[LANE]; }                                                 \
    } while (0)
    for (; i + FO_LANES <= n; i += FO_LANES)
        for (int j = 0; j < FO_LANES; j++) FO_NORM_ELEM(i + j, j);
    for (int j = 0; i < n; i++, j++) FO_NORM_ELEM(i, j);
#undef FO_NORM_ELEM
}

double FO_NAME(norm_block)(const FO_T *g, fo_index n, int kind, double p)
{
    double acc[FO_LANES] = {0};
    if (kind == FO_NORM_SQ) FO_NAME(norm_loop)(g, n, p, acc, FO_NORM_SQ);
    else if (kind == FO_NORM_ABS) FO_NAME(norm_loop)(g, n, p, acc, FO_NORM_ABS);
    else if (kind == FO_NORM_POW) FO_NAME(norm_loop)(g, n, p, acc, FO_NORM_POW);
    else {
        FO_NAME(norm_loop)(g, n, p, acc, FO_NORM_MAX);
        for (int w = FO_LANES / 2; w > 0; w /= 2)     /* NaN-propagating max, fixed order */
            for (int j = 0; j < w; j++)
                if (acc[j + w] > acc[j] || acc[j + w] != acc[j + w]) acc[j] = acc[j + w];
        return acc[0];
    }
    FO_FOLD_LANES(acc);
    return acc[0];
}
#endif
