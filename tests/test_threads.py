"""Threads: concurrent optimizers, one optimizer shared by threads, results independent of
the thread count and CPU path, and the GIL released in every kernel.

No test here depends on timing: concurrency is either checked by its results (bit-identical
to a sequential run), or proved by an observation that is impossible unless the kernel ran
while another Python thread executed (see test_gil_is_released).
"""
import threading
import time

import numpy as np
import pytest

import fusedopt
from fusedopt import _runtime

BLOCK = 16384


def bits(a):
    a = np.asarray(a)
    return a.dtype.str, a.shape, a.tobytes()


def state_bits(opt):
    return {i: {k: (bits(v) if isinstance(v, np.ndarray) else v) for k, v in s.items()}
            for i, s in opt.state.items()}


# ----------------------------------------------------------------------------- independent

MAKERS = [
    lambda ps: fusedopt.Adam(ps, lr=1e-2, amsgrad=True, weight_decay=0.01),
    lambda ps: fusedopt.AdamW(ps, lr=1e-2, convention="keras", eps=1e-7),
    lambda ps: fusedopt.SGD(ps, lr=1e-2, momentum=0.9, nesterov=True),
    lambda ps: fusedopt.Adam(ps, lr=1e-2, convention="tf1"),
    lambda ps: fusedopt.AdamW(ps, lr=1e-2, convention="optax", amsgrad=True),
    lambda ps: fusedopt.SGD(ps, lr=1e-2, momentum=0.5, dampening=0.1, weight_decay=0.1),
    lambda ps: fusedopt.Adam(ps, lr=1e-2, convention="sklearn"),
    lambda ps: fusedopt.SGD(ps, lr=1e-2, momentum=0.9, convention="keras"),
]
STEPS = 12


class Job:
    """One training run: a loss and its gradient through the fused kernel for the first
    parameter (as logits), given gradients for the others, then an optimizer step."""

    def __init__(self, k):
        rng = np.random.default_rng(100 + k)
        dtype = (np.float32, np.float64)[k % 2]
        self.shapes = [(3 * BLOCK + 5 + k,), (3, 7), (BLOCK + 3 * k, 2)]
        self.params0 = [rng.standard_normal(s).astype(dtype) for s in self.shapes]
        self.labels = (rng.random(self.shapes[0]) > 0.5).astype(np.uint8)
        self.grads = [[rng.standard_normal(s).astype(dtype) for s in self.shapes[1:]]
                      for _ in range(STEPS)]
        self.make = MAKERS[k]
        self.n_threads = (None, 1, 2, 3)[k % 4]

    def run(self, barrier=None):
        params = [p.copy() for p in self.params0]
        opt = self.make(params)
        losses = []
        if barrier is not None:
            barrier.wait()
        for t in range(STEPS):
            loss, g0 = fusedopt.sigmoid_cross_entropy_and_grad(params[0], self.labels,
                                                               n_threads=self.n_threads)
            losses.append(loss)
            opt.step([g0] + self.grads[t], n_threads=self.n_threads)
        return [bits(p) for p in params], state_bits(opt), losses


def test_eight_threads_eight_optimizers_match_sequential_runs():
    jobs = [Job(k) for k in range(8)]
    sequential = [job.run() for job in jobs]
    for _ in range(2):
        results = [None] * 8
        errors = []
        barrier = threading.Barrier(8)

        def work(k):
            try:
                results[k] = jobs[k].run(barrier)
            except BaseException as e:        # reported below, not lost in the thread
                errors.append(e)
                barrier.abort()

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        for k in range(8):
            assert results[k] == sequential[k], f"optimizer {k} differs from its sequential run"


# ----------------------------------------------------------------------------- one shared

@pytest.mark.parametrize("make", [
    lambda ps: fusedopt.Adam(ps, lr=1e-2, amsgrad=True),
    lambda ps: fusedopt.SGD(ps, lr=1e-2, momentum=0.9),
    lambda ps: fusedopt.AdamW(ps, lr=1e-2, convention="optax", check_finite=True),
], ids=["adam-amsgrad", "sgd-momentum", "adamw-optax-check_finite"])
def test_one_optimizer_stepped_from_two_threads(make):
    """Concurrent step() calls on one optimizer run one at a time (its lock): with the same
    gradients every step, 2 x K concurrent steps equal 2 x K sequential ones, bit for bit,
    and every state_dict() taken meanwhile is one of the sequential states."""
    rng = np.random.default_rng(11)
    shapes = [(2 * BLOCK + 1,), (5, 3), (BLOCK,)]
    p0 = [rng.standard_normal(s) for s in shapes]
    grads = [rng.standard_normal(s) for s in shapes]
    for g in grads:
        g.setflags(write=False)                   # shared by both threads, read only
    K = 15
    seq_params = [p.copy() for p in p0]
    seq = make(seq_params)
    history = [(state_bits(seq), [bits(p) for p in seq_params])]
    for _ in range(2 * K):
        seq.step(grads)
        history.append((state_bits(seq), [bits(p) for p in seq_params]))
    by_step = {h[0].get(0, {}).get("step", 0): h for h in history}

    params = [p.copy() for p in p0]
    opt = make(params)
    barrier = threading.Barrier(3)
    errors, snapshots = [], []

    def stepper():
        try:
            barrier.wait()
            for _ in range(K):
                assert opt.step(grads, n_threads=2) is True
        except BaseException as e:
            errors.append(e)

    def reader():
        try:
            barrier.wait()
            for _ in range(4 * K):
                snapshots.append(opt.state_dict())
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=f) for f in (stepper, stepper, reader)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    final_state, final_params = history[-1]
    assert state_bits(opt) == final_state
    assert [bits(p) for p in params] == final_params
    for sd in snapshots:
        steps = {s["step"] for s in sd["state"].values()}
        assert len(steps) <= 1, f"a snapshot mixes steps {steps}"
        k = steps.pop() if steps else 0
        expected = by_step[k][0]
        got = {i: {n: (bits(v) if isinstance(v, np.ndarray) else v) for n, v in s.items()}
               for i, s in sd["state"].items()}
        assert got == expected, f"snapshot at step {k} is not the sequential state"


# ----------------------------------------------------------------------------- thread counts

N_BIG = 3 * BLOCK + 13                 # 49165 = 5 * 9833: also a (rows, 5) matrix


def _data(dtype, seed=12):
    rng = np.random.default_rng(seed)

    def view(scale=1.0, shift=3):
        base = np.empty(N_BIG + 16, dtype)            # not 64-byte aligned: blocks move
        a = base[shift:shift + N_BIG]
        a[...] = rng.standard_normal(N_BIG) * scale
        return a
    return rng, view


def kernel_results(dtype, n_threads):
    """Every kernel on inputs of several blocks (misaligned), as bytes."""
    rng, view = _data(dtype)
    out = []
    x = view(4.0)
    y = (rng.random(N_BIG) > 0.5).astype(dtype)
    y8 = y.astype(np.uint8)
    x2 = x.reshape(N_BIG // 5, 5)
    y2 = y.reshape(x2.shape)
    w = rng.uniform(0, 2, N_BIG).astype(dtype)
    pw = rng.uniform(0.5, 3, 5).astype(dtype)
    for red in ("mean", "sum", "none"):
        for args, kw in (((x, y), {}), ((x, y8), dict(label_smoothing=0.1)),
                         ((x2, y2), dict(weight=w.reshape(x2.shape), pos_weight=pw)),
                         ((x2, y2), dict(weight=pw, pos_weight=2.0))):
            loss, grad = fusedopt.sigmoid_cross_entropy_and_grad(*args, reduction=red,
                                                                 n_threads=n_threads, **kw)
            only = fusedopt.sigmoid_cross_entropy(*args, reduction=red, n_threads=n_threads,
                                                  **kw)
            out += [bits(loss), bits(grad), bits(only)]
        t = view()
        for fn in (fusedopt.l1_loss_and_grad, fusedopt.l2_loss_and_grad):
            for weight in (None, w, 0.5):
                loss, grad = fn(x, t, weight=weight, reduction=red, n_threads=n_threads)
                out += [bits(loss), bits(grad)]
        out += [bits(fusedopt.l1_loss(x, t, reduction=red, n_threads=n_threads)),
                bits(fusedopt.l2_loss(x, t, reduction=red, n_threads=n_threads))]
    adam_cases = [("torch", dict(amsgrad=True, weight_decay=0.1)),
                  ("torch", dict(weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
                  ("tf1", {}), ("keras", dict(weight_decay=0.004, decoupled_weight_decay=True,
                                              amsgrad=True)),
                  ("optax", dict(eps_root=1e-8, amsgrad=True, weight_decay=1e-4,
                                 decoupled_weight_decay=True)), ("sklearn", {})]
    for conv, kw in adam_cases:
        p, m, v, vm = view(), view(0.1), np.abs(view(0.01)), np.abs(view(0.01))
        for step in (1, 2, 3):
            fusedopt.adam_step(p, view(), m, v, step=step, convention=conv, lr=0.01,
                               max_exp_avg_sq=vm if kw.get("amsgrad") else None,
                               n_threads=n_threads, **kw)
        out += [bits(a) for a in (p, m, v, vm)]
    sgd_cases = [("torch", dict(momentum=0.9, dampening=0.1, weight_decay=0.1)),
                 ("torch", dict(momentum=0.9, nesterov=True, maximize=True)),
                 ("torch", {}), ("tf1", dict(momentum=0.9, nesterov=True)),
                 ("keras", dict(momentum=0.9, weight_decay=0.01)),
                 ("optax", dict(momentum=0.9, nesterov=True)), ("sklearn", dict(momentum=0.9))]
    for conv, kw in sgd_cases:
        p, buf = view(), view(0.1)
        for step in (1, 2, 3):
            fusedopt.sgd_step(p, view(), buf, lr=0.01, step=step, convention=conv,
                              n_threads=n_threads, **kw)
        out += [bits(p), bits(buf)]
    grads = [view(1e3) for _ in range(3)] + [np.ones(7, dtype), np.ones((), dtype)]
    out.append(fusedopt.unscale_and_check(grads, 1 / 1024, n_threads=n_threads))
    out.append(fusedopt.all_finite(grads, n_threads=n_threads))
    out += [bits(g) for g in grads]
    grads[1][-1] = np.inf
    out.append(fusedopt.unscale_and_check(grads, 0.5, n_threads=n_threads))
    out.append(fusedopt.all_finite(grads, n_threads=n_threads))
    # a multi-tensor class step: many tensors, two groups, both dtypes
    ps = [view() for _ in range(3)] + [np.ones(s, dtype) for s in ((3,), (2, 2), ())]
    opt = fusedopt.Adam([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.1}], amsgrad=True)
    for _ in range(3):
        opt.step([view() for _ in range(3)] + [np.ones_like(p) for p in ps[3:]],
                 n_threads=n_threads)
    out += [bits(p) for p in ps]
    return out


_CANONICAL = {}


def canonical(dtype):
    """Results on the baseline path with one thread (computed once per dtype)."""
    if dtype not in _CANONICAL:
        before = fusedopt.cpu_info()["path"]
        _runtime._set_cpu_path("baseline")
        try:
            _CANONICAL[dtype] = kernel_results(dtype, 1)
        finally:
            _runtime._set_cpu_path(before)
    return _CANONICAL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_kernel_identical_for_any_thread_count_and_cpu_path(cpu_path, dtype):
    expected = canonical(dtype)
    for n_threads in (1, 2, 3, 4):
        got = kernel_results(dtype, n_threads)
        assert len(got) == len(expected)
        bad = [k for k, (a, b) in enumerate(zip(got, expected)) if a != b]
        assert not bad, f"{cpu_path}, n_threads={n_threads}: results {bad} differ"
    # the process-wide default (fusedopt.set_num_threads), not a per-call n_threads
    for n in (1, 3):
        fusedopt.set_num_threads(n)
        try:
            assert kernel_results(dtype, None) == expected
        finally:
            fusedopt.set_num_threads(None)


# ----------------------------------------------------------------------------- the GIL

N_GIL = 1 << 24      # 16 Mi elements: milliseconds per call even on one thread


def zeros(n=N_GIL, dtype=np.float32):
    """Zeros in memory that is really mapped (np.zeros maps pages lazily: a call reading
    them would be too quick to observe)."""
    return np.full(n, 0, dtype)


def remember(st, *arrays):
    """Records the end elements of arrays, the only ones a probe changes, to reset them."""
    st.setdefault("restore", []).extend((a, i, a[i].copy()) for a in arrays for i in (0, -1))
    return st


class GilProbe:
    """A kernel call on input x (read from x[0] to x[-1], in order, on one thread) that
    another Python thread edits while it runs: first x[0], then x[-1].

    If the call held the GIL, the other thread's two writes would happen entirely before
    or entirely after it: the call would see (old, old), (new, old) or (new, new).  Seeing
    x[0] old *and* x[-1] new is only possible when the other thread ran Python code during
    the call, i.e. the GIL was released.  (The converse can fail on a given attempt when the
    other thread is not scheduled in time, so attempts are repeated; no false positive.)
    """

    def __init__(self, setup, run, seen):
        self.setup, self.run, self.seen = setup, run, seen

    def attempt(self, st, pause):
        for a, i, v in st["restore"]:
            a[i] = v
        x, first, last = st["x"], st["first"], st["last"]
        go = threading.Event()

        def editor():
            go.wait()
            if pause:
                time.sleep(pause)
            x[0] = first
            x[-1] = last

        th = threading.Thread(target=editor)
        th.start()
        go.set()
        result = self.run(st)
        th.join()
        return self.seen(st, result)


def _loss_probe(fn, values):
    """x = zeros, target zeros; x[0] <- a, x[-1] <- b; the sum of the losses tells which
    were seen: loss(0) = 0 for L1/L2 (the BCE terms are told apart by size)."""
    def setup():
        t = zeros(dtype=np.uint8 if fn is fusedopt.sigmoid_cross_entropy else np.float32)
        x = zeros()
        return remember(dict(x=x, t=t, first=values[0], last=values[1]), x)

    def run(st):
        return fn(st["x"], st["t"], reduction="sum", n_threads=1)

    base = fn(np.zeros(4, np.float32), np.zeros(4, np.float32), reduction="sum") / 4 * N_GIL
    da = fn(np.array([values[0]], np.float32), np.zeros(1, np.float32), reduction="sum") - \
        base / N_GIL
    db = fn(np.array([values[1]], np.float32), np.zeros(1, np.float32), reduction="sum") - \
        base / N_GIL

    def seen(st, loss):
        combos = {(a, b): base + a * da + b * db for a in (0, 1) for b in (0, 1)}
        (a, b), value = min(combos.items(), key=lambda kv: abs(kv[1] - loss))
        assert abs(value - loss) < 0.1 * min(da, db), (loss, combos)
        return bool(a), bool(b)
    return setup, run, seen


def _grad_probe(fn):
    """The gradient of each element tells what that element was when it was read."""
    def setup():
        x = zeros()
        return remember(dict(x=x, t=zeros(), out=zeros(), first=5.0, last=5.0), x)

    def run(st):
        fn(st["x"], st["t"], reduction="sum", out=st["out"], n_threads=1)

    zero = fn(np.zeros(1, np.float32), np.zeros(1, np.float32), reduction="sum")[1][0]

    def seen(st, _):
        return bool(st["out"][0] != zero), bool(st["out"][-1] != zero)
    return setup, run, seen


def _step_probe(step, prepare=None):
    """param = m = v = 0 and grad = 0 leave param at 0; grad[0], grad[-1] <- 1 move it."""
    def setup():
        st = dict(x=zeros(), p=zeros(), s=[zeros() for _ in range(3)], first=1.0, last=1.0)
        if prepare is not None:
            prepare(st)
        return remember(st, st["x"], st["p"], *st["s"])

    def seen(st, _):
        return bool(st["p"][0] != 0), bool(st["p"][-1] != 0)
    return setup, lambda st: step(st), seen


def _finite_probe(fn):
    """x[0] = 0, x[-1] = NaN; then x[0] <- NaN, x[-1] <- 0.  Every state of x holds a NaN:
    only a call reading x[0] before the first write and x[-1] after the second finds none."""
    def setup():
        x = zeros()
        x[-1] = np.nan
        return remember(dict(x=x, first=np.nan, last=0.0), x)

    def seen(st, all_finite):
        return (False, True) if all_finite else (True, False)
    return setup, lambda st: fn(st["x"]), seen


def _class_probe(cls, **kw):
    """An optimizer whose state exists already (a first step with a zero gradient), so that
    the probed step() does no allocation (numpy's zero-filling releases the GIL too)."""
    def prepare(st):
        st["opt"] = cls([st["p"]], **kw)
        st["opt"].step([zeros()], n_threads=1)
        assert not st["p"].any()
        remember(st, *(a for a in st["opt"].state[0].values() if isinstance(a, np.ndarray)))

    return _step_probe(lambda st: st["opt"].step([st["x"]], n_threads=1), prepare)


GIL_PROBES = {
    "sigmoid_cross_entropy": _loss_probe(fusedopt.sigmoid_cross_entropy, (60.0, 600.0)),
    "l1_loss": _loss_probe(fusedopt.l1_loss, (1.0, 2.0)),
    "l2_loss": _loss_probe(fusedopt.l2_loss, (1.0, 2.0)),
    "sigmoid_cross_entropy_and_grad": _grad_probe(fusedopt.sigmoid_cross_entropy_and_grad),
    "l1_loss_and_grad": _grad_probe(fusedopt.l1_loss_and_grad),
    "l2_loss_and_grad": _grad_probe(fusedopt.l2_loss_and_grad),
    "adam_step": _step_probe(lambda st: fusedopt.adam_step(
        st["p"], st["x"], st["s"][0], st["s"][1], step=1, amsgrad=True,
        max_exp_avg_sq=st["s"][2], n_threads=1)),
    "sgd_step": _step_probe(lambda st: fusedopt.sgd_step(
        st["p"], st["x"], st["s"][0], lr=0.1, momentum=0.9, step=2, n_threads=1)),
    "Adam.step": _class_probe(fusedopt.Adam, lr=0.1, amsgrad=True),
    "SGD.step": _class_probe(fusedopt.SGD, lr=0.1, momentum=0.9),
    "unscale_and_check": _finite_probe(
        lambda x: not fusedopt.unscale_and_check([x], 1.0, n_threads=1)),
    "all_finite": _finite_probe(lambda x: fusedopt.all_finite([x], n_threads=1)),
}


@pytest.mark.parametrize("name", sorted(GIL_PROBES))
def test_gil_is_released(name):
    probe = GilProbe(*GIL_PROBES[name])
    st = probe.setup()
    outcomes = []
    for k in range(200):
        seen = probe.attempt(st, pause=(0, 0, 1e-4, 5e-4, 2e-3)[k % 5])
        outcomes.append(seen)
        if seen == (False, True):
            return
    pytest.fail(f"{name}: never observed another thread running during the call "
                f"(outcomes {sorted(set(outcomes))}): the GIL seems held")


# ----------------------------------------------------------------------------- back-off
# Threads step aside when they lose time (a worker kept waiting by a busy CPU).  The rule
# is tested with the clock passed in; the calls' thread counts by the count of threaded
# regions, never by timing.

@pytest.fixture
def backoff():
    """A clean back-off state (restored clean afterwards: the state is process-wide)."""
    from fusedopt import _core
    _core._adapt_reset()
    yield _core
    _core.set_adaptive_threads(True)
    _core._adapt_reset()


def test_backoff_rule_with_the_clock_passed_in(backoff):
    core, t = backoff, 1000.0
    for k in range(50):                      # threads gain: never serial
        core._adapt_note(t + k * 1e-3, wall=1e-4, own=1e-4, used=2)
        assert not core._adapt_serial(t + k * 1e-3)
    assert core._adapt_state(t)["credit"] == pytest.approx(1e-3)   # capped
    # a late worker: 5 ms lost against 1 ms of credit -> 50 ms on one thread
    t += 1.0
    core._adapt_note(t, wall=5e-3, own=1e-4, used=2)
    assert core._adapt_state(t)["backoff"] == 0.05
    assert core._adapt_serial(t) and core._adapt_serial(t + 0.049)
    assert not core._adapt_serial(t + 0.05)        # threads again: a new spell starts
    # threads keep losing soon after each retry: the back-off doubles, up to 2 s
    t += 0.05
    expect = [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    for b in expect:
        core._adapt_note(t + 1e-3, wall=5e-3, own=1e-4, used=2)
        assert core._adapt_state(t + 1e-3)["backoff"] == b
        assert core._adapt_serial(t + 1e-3 + b - 1e-6)
        t += 1e-3 + b
        assert not core._adapt_serial(t)
    # a spell longer than the back-off, then a loss: the back-off starts again small
    for k in range(100):
        core._adapt_note(t + k * 0.1, wall=1e-4, own=1e-4, used=2)
    t += 10.0
    core._adapt_note(t, wall=5e-3, own=1e-4, used=2)
    assert core._adapt_state(t)["backoff"] == 0.05
    # small losses within the credit do not back off
    core._adapt_reset()
    core._adapt_note(t, wall=1e-4, own=1e-3, used=2)        # +1.9 ms, capped at 1 ms
    core._adapt_note(t, wall=1.5e-3, own=1e-3, used=3)      # three threads: +1.5 ms, capped
    core._adapt_note(t, wall=2.5e-3, own=1e-3, used=2)      # -0.5 ms: 0.5 ms of credit left
    assert not core._adapt_serial(t)
    assert core._adapt_state(t)["credit"] == pytest.approx(5e-4)


def _adam_regions(n_threads=None):
    from fusedopt import _core
    p, g = np.ones(4 * BLOCK, np.float32), np.full(4 * BLOCK, 0.5, np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    before = _core.threaded_regions()
    fusedopt.adam_step(p, g, m, v, step=1, lr=1e-3, n_threads=n_threads)
    return _core.threaded_regions() - before


def test_backed_off_calls_run_on_one_thread_unless_they_ask(backoff):
    if fusedopt.get_num_threads() < 2 or fusedopt.cpu_info()["forked_single_threaded"]:
        pytest.skip("needs a default of two threads or more")
    core = backoff
    # a loss far in the future of this clock: backed off for the whole test
    core._adapt_note(core.clock() + 1e6, wall=1.0, own=0.0, used=2)
    assert fusedopt.cpu_info()["backed_off_for"] > 1e5
    assert _adam_regions() == 0                   # the default: one thread
    assert _adam_regions(n_threads=2) == 1        # asked for: two threads, as asked
    fusedopt.set_adaptive_threads(False)          # off: the default threads again
    assert fusedopt.cpu_info()["backed_off_for"] == 0.0
    assert _adam_regions() == 1
    fusedopt.set_adaptive_threads(True)
    assert _adam_regions() == 1                   # a clean state: threads
    with pytest.raises(TypeError, match="enabled must be a bool"):
        fusedopt.set_adaptive_threads(1)
