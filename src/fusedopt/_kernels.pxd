# Declarations of kernels/fusedopt.h for the binding.
cdef extern from "fusedopt.h" nogil:
    ctypedef Py_ssize_t fo_index
    int FO_BLOCK
    enum:
        FO_F32
        FO_F64
        FO_U8
    enum:
        FO_ADAM_TORCH
        FO_ADAM_EPSHAT
        FO_ADAM_SKLEARN
        FO_ADAM_OPTAX
    enum:
        FO_DECAY_NONE
        FO_DECAY_L2
        FO_DECAY_MUL
        FO_DECAY_SUB
        FO_DECAY_OPTAX
    enum:
        FO_AMS_NONE
        FO_AMS_RAW
        FO_AMS_HAT
    enum:
        FO_SGD_TORCH
        FO_SGD_TF1
        FO_SGD_KERAS
        FO_SGD_OPTAX
        FO_SGD_SKLEARN
        FO_SGD_PLAIN
    enum:
        FO_BC_SCALAR
        FO_BC_FULL
        FO_BC_COL
    enum:
        FO_REG_L1
        FO_REG_L2

    ctypedef struct fo_adam_args:
        int form, decay, amsgrad, maximize
        double beta1, beta2, one_minus_beta1, one_minus_beta2
        double eps, eps_root, wd, lr, decay_factor, step_size, bc2_sqrt, bc1, bc2

    ctypedef struct fo_sgd_args:
        int form, decay, nesterov, maximize, first_step
        double lr, momentum, one_minus_dampening, wd

    ctypedef struct fo_bce_args:
        const void *x
        const void *y
        int y_dtype
        const void *w
        int w_mode
        const void *pw
        int pw_mode
        fo_index ncols
        double w_scalar, pw_scalar, smooth_a, smooth_b, grad_scale
        void *grad
        void *loss

    ctypedef struct fo_reg_args:
        int kind
        const void *pred
        const void *target
        const void *w
        double grad_scale
        void *grad
        void *loss

    void fo_adam_multi(int dtype, const fo_adam_args *a, int ntensors, void **ps,
                       const void **gs, void **ms, void **vs, void **vmaxs,
                       const fo_index *ns, int n_threads)
    void fo_sgd_multi(int dtype, const fo_sgd_args *a, int ntensors, void **ps,
                      const void **gs, void **bufs, const fo_index *ns, int n_threads)
    double fo_bce(int dtype, const fo_bce_args *a, fo_index n, int n_threads)
    double fo_reg(int dtype, const fo_reg_args *a, fo_index n, int n_threads)
    int fo_unscale_check(int dtype, int ntensors, void **gs, const fo_index *ns,
                         double scale, int do_scale, int n_threads)
    enum:
        FO_STREAM_COPY
        FO_STREAM_TRIAD
        FO_STREAM_ADAM
        FO_STREAM_SGD
        FO_STREAM_LOSS
    void fo_stream(int dtype, int pattern, void *a, const void *b, void *c, void *d,
                   fo_index n, int n_threads)
    void fo_exp_neg(int dtype, const void *a, void *out, fo_index n)
    void fo_log1p_unit(int dtype, const void *e, void *out, fo_index n)

    int fo_select_isa(int cap)
    int fo_current_isa()
    int fo_detected_isa()
    int fo_openmp()
    int fo_max_threads()
    void fo_set_default_threads(int n)
    int fo_default_threads()
    fo_index fo_parallel_threshold()
    void fo_set_parallel_threshold(fo_index n)
    int fo_forked_single_threaded()
