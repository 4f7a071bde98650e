# Declarations of kernels/fusedopt.h for the binding: what every family shares (each
# family's own types and entry point are declared in _core.pyx, beside its binding).
cdef extern from "fusedopt.h" nogil:
    ctypedef Py_ssize_t fo_index
    int FO_BLOCK
    enum:
        FO_F32
        FO_F64
        FO_U8
    enum:
        FO_DECAY_NONE
        FO_DECAY_L2
        FO_DECAY_MUL
        FO_DECAY_SUB
        FO_DECAY_OPTAX
    enum:
        FO_MAX_STATES
    ctypedef void *const *const *fo_state_lists "void *const *const *"
    void fo_step(int opt, int dtype, const void *args, int ntensors, void **ps,
                 const void **gs, int nstates, fo_state_lists states, const fo_index *ns,
                 int n_threads)
    int fo_unscale_check(int dtype, int ntensors, void **gs, const fo_index *ns,
                         double scale, int do_scale, int n_threads)
    enum:
        FO_STREAM_COPY
        FO_STREAM_TRIAD
        FO_STREAM_ADAM
        FO_STREAM_SGD
        FO_STREAM_LOSS
        FO_STREAM_READ
        FO_STREAM_SCALE
        FO_STREAM_READ2
        FO_STREAM_AXPY
        FO_STREAM_ACC
        FO_STREAM_APPLY
        FO_STREAM_MOMENTS
        FO_STREAM_APPLY_CD
    void fo_stream(int dtype, int pattern, void *a, const void *b, void *c, void *d,
                   fo_index n, int n_threads)
    void fo_exp_neg(int dtype, const void *a, void *out, fo_index n)
    void fo_log1p_unit(int dtype, const void *e, void *out, fo_index n)

    int fo_select_isa(int cap)
    int fo_current_isa()
    int fo_detected_isa()
    int fo_isa_built(int isa)
    int fo_isa_available(int isa)
    int fo_openmp()
    int fo_max_threads()
    void fo_set_default_threads(int n)
    int fo_default_threads()
    fo_index fo_parallel_threshold()
    void fo_set_parallel_threshold(fo_index n)
    int fo_forked_single_threaded()
    void fo_set_adaptive_threads(int on)
    int fo_adaptive_threads()
    void fo_adapt_reset()
    void fo_adapt_note(double now, double wall, double own, int used)
    int fo_adapt_serial(double now)
    void fo_adapt_state(double now, double *serial_for, double *backoff, double *credit)
    double fo_now()
    long long fo_threaded_regions()
