/* fusedopt: the per-path function table (internal to kernels/). */
#ifndef FO_KERNELS_H
#define FO_KERNELS_H
#include "fusedopt.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(FO_NO_X86_PATHS)
#define FO_HAVE_X86_PATHS 1
#else
#define FO_HAVE_X86_PATHS 0
#endif


typedef struct {
    void (*adam_f32)(const fo_adam_args *, float *, const float *, float *, float *, float *, fo_index);
    void (*adam_f64)(const fo_adam_args *, double *, const double *, double *, double *, double *, fo_index);
    void (*sgd_f32)(const fo_sgd_args *, float *, const float *, float *, fo_index);
    void (*sgd_f64)(const fo_sgd_args *, double *, const double *, double *, fo_index);
    double (*bce_f32)(const fo_bce_args *, fo_index, fo_index);
    double (*bce_f64)(const fo_bce_args *, fo_index, fo_index);
    double (*reg_f32)(const fo_reg_args *, fo_index, fo_index);
    double (*reg_f64)(const fo_reg_args *, fo_index, fo_index);
    void (*exp_neg_f32)(const float *, float *, fo_index);
    void (*exp_neg_f64)(const double *, double *, fo_index);
    void (*log1p_unit_f32)(const float *, float *, fo_index);
    void (*log1p_unit_f64)(const double *, double *, fo_index);
    int (*unscale_check_f32)(float *, fo_index, float, int);
    int (*unscale_check_f64)(double *, fo_index, double, int);
    void (*stream_f32)(int, float *, const float *, float *, float *, fo_index);
    void (*stream_f64)(int, double *, const double *, double *, double *, fo_index);
} fo_table;


extern const fo_table fo_table_baseline;
#if FO_HAVE_X86_PATHS
extern const fo_table fo_table_avx2;
extern const fo_table fo_table_avx512;
#endif
#endif
