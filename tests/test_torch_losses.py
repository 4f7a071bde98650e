"""fusedopt.torch.functional and its modules against torch.nn.functional / torch.nn.

Values and gradients are compared with torch's own autograd.  Tolerance: both sides
evaluate the same formula in another order, each within a few eps of the magnitude of
the terms it adds (tests/test_softmax.py, tests/test_losses.py), so we allow 32 eps of
that magnitude: for the softmax loss the row's scale of tests/test_softmax.py, for the
sigmoid loss |w|*(|x| + 2)*(1 + pw) (torch's (1-y)*x + max(-x, 0) cancels terms of
size |x| for soft labels).  Gradients are taken through a grad_output that is not 1.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import fusedopt.torch as ft  # noqa: E402
import fusedopt.torch.functional as FF  # noqa: E402

from test_softmax import make, scales  # noqa: E402

K = 32
DTYPES = [torch.float32, torch.float64]


def _eps(dtype):
    return torch.finfo(dtype).eps


def close(ours, theirs, scale, dtype, what):
    ours, theirs = ours.detach().double().numpy(), theirs.detach().double().numpy()
    assert ours.shape == theirs.shape, what
    tol = K * _eps(dtype) * np.broadcast_to(np.asarray(scale, np.float64), ours.shape)
    err = np.abs(ours - theirs)
    assert np.all(err <= tol), (what, float((err - tol).max()))


def _both(fn_ours, fn_theirs, x, reduction):
    """Values and input gradients of both, through the same non-trivial grad_output."""
    out = []
    for fn in (fn_ours, fn_theirs):
        xt = x.clone().requires_grad_(True)
        loss = fn(xt)
        go = torch.linspace(0.5, 2.0, loss.numel(), dtype=x.dtype).reshape(loss.shape) \
            if reduction == "none" else torch.tensor(1.75, dtype=x.dtype)
        (g,) = torch.autograd.grad(loss, xt, go)
        out.append((loss, g, go))
    return out


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", ["index", "probs"])
@pytest.mark.parametrize("kw", [{}, dict(weight=True), dict(label_smoothing=0.2),
                                dict(weight=True, ignore_index=1, label_smoothing=0.1)],
                         ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cross_entropy_matches_torch(dtype, kw, kind, reduction):
    npd = np.float32 if dtype == torch.float32 else np.float64
    x, y, q, w = make((48, 37), npd, seed=21)
    if kind == "probs" and "ignore_index" in kw:
        kw = {k: v for k, v in kw.items() if k != "ignore_index"}
    target = torch.from_numpy(y) if kind == "index" else torch.from_numpy(q)
    tkw = {k: (torch.from_numpy(w) if k == "weight" else v) for k, v in kw.items()}
    (lo, go_, gr), (lt, gt, _) = _both(
        lambda a: FF.cross_entropy(a, target, reduction=reduction, **tkw),
        lambda a: F.cross_entropy(a, target, reduction=reduction, **tkw),
        torch.from_numpy(x), reduction)
    rows, gscale, den = scales(x, y if kind == "index" else q, w if kw.get("weight") else None,
                               kw.get("label_smoothing", 0.0), kw.get("ignore_index", -100),
                               reduction)
    assert lo.dtype == dtype and lo.shape == lt.shape
    if reduction == "none":
        close(lo, lt, rows, dtype, "loss")
        gscale = gscale * np.abs(gr.numpy())[:, None]
    else:
        close(lo, lt, rows.sum() / (den if reduction == "mean" else 1), dtype, "loss")
        gscale = gscale * float(gr)
    close(go_, gt, gscale, dtype, "grad")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kw", [{}, dict(weight="full"), dict(weight="col"),
                                dict(pos_weight=True), dict(weight="col", pos_weight=True)],
                         ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_bce_with_logits_matches_torch(dtype, kw, reduction):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(33, 17, generator=g, dtype=dtype) * 4
    y = torch.rand(33, 17, generator=g, dtype=dtype)
    y[::2] = (y[::2] > 0.5).to(dtype)
    tkw = {}
    if kw.get("weight") == "full":
        tkw["weight"] = torch.rand(33, 17, generator=g, dtype=dtype) * 2
    elif kw.get("weight") == "col":
        tkw["weight"] = torch.rand(17, generator=g, dtype=dtype) * 2
    if kw.get("pos_weight"):
        tkw["pos_weight"] = torch.rand(17, generator=g, dtype=dtype) * 3 + 0.1
    (lo, go_, gr), (lt, gt, _) = _both(
        lambda a: FF.binary_cross_entropy_with_logits(a, y, reduction=reduction, **tkw),
        lambda a: F.binary_cross_entropy_with_logits(a, y, reduction=reduction, **tkw),
        x, reduction)
    w = tkw.get("weight", torch.ones(1, dtype=dtype)).abs().double().numpy()
    pw = tkw.get("pos_weight", torch.ones(1, dtype=dtype)).double().numpy()
    scale = np.broadcast_to(w * (np.abs(x.double().numpy()) + 2) * (1 + pw), x.shape)
    n = x.numel() if reduction == "mean" else 1
    assert lo.dtype == dtype and lo.shape == lt.shape
    if reduction == "none":
        close(lo, lt, scale, dtype, "loss")
        gscale = np.abs(gr.numpy()) * w * (2 + pw)
    else:
        close(lo, lt, scale.sum() / n, dtype, "loss")
        gscale = float(gr) * w * (2 + pw) / n
    close(go_, gt, np.broadcast_to(gscale, x.shape), dtype, "grad")


def test_no_gradient_when_input_does_not_require_it():
    x, y = torch.randn(8, 5), torch.randint(0, 5, (8,))
    loss = FF.cross_entropy(x, y)
    assert loss.grad_fn is None and not loss.requires_grad
    assert loss.item() == pytest.approx(F.cross_entropy(x, y).item(), rel=1e-6)
    b = FF.binary_cross_entropy_with_logits(x, (x > 0).float())
    assert b.grad_fn is None


@pytest.mark.parametrize("fn", ["cross_entropy", "bce"])
def test_unit_grad_output_hands_over_the_saved_gradient(fn):
    """loss.backward(): input.grad is the forward's gradient itself (no copy), the same
    values as through grad_output 2 halved; with retain_graph each backward still adds
    the gradient once (autograd copies what the graph keeps)."""
    x = torch.randn(64, 10, dtype=torch.float64, requires_grad=True)
    if fn == "bce":
        y = torch.rand(64, 10, dtype=torch.float64)
        f = FF.binary_cross_entropy_with_logits
    else:
        y = torch.randint(0, 10, (64,))
        f = FF.cross_entropy
    loss = f(x, y)
    ptr = loss.grad_fn.saved_tensors[0].data_ptr()     # no reference kept
    loss.backward()
    assert x.grad.data_ptr() == ptr
    g1 = x.grad.clone()
    x.grad = None
    (2 * f(x, y)).backward()
    assert torch.equal(x.grad, 2 * g1)
    x.grad = None
    loss = f(x, y)
    for _ in range(2):
        loss.backward(retain_graph=True)
    loss.backward()
    assert torch.equal(x.grad, 3 * g1)


def test_double_backward_is_a_clear_error():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    loss = FF.cross_entropy(x, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(RuntimeError, match="second derivative"):
        torch.autograd.grad(loss, x, create_graph=True)
    (g,) = torch.autograd.grad(loss, x)      # a plain backward still works
    assert g.shape == x.shape


def test_modules_are_torchs_with_the_fused_forward():
    w = torch.rand(5)
    ours, theirs = ft.CrossEntropyLoss(weight=w, label_smoothing=0.1), \
        torch.nn.CrossEntropyLoss(weight=w, label_smoothing=0.1)
    assert isinstance(ours, torch.nn.CrossEntropyLoss)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    x, y = torch.randn(9, 5), torch.randint(0, 5, (9,))
    assert ours(x, y).item() == pytest.approx(theirs(x, y).item(), rel=1e-5)
    pw = torch.rand(5) + 0.5
    b1, b2 = ft.BCEWithLogitsLoss(pos_weight=pw), torch.nn.BCEWithLogitsLoss(pos_weight=pw)
    t = (torch.rand(9, 5) > 0.5).float()
    assert isinstance(b1, torch.nn.BCEWithLogitsLoss)
    assert b1(x, t).item() == pytest.approx(b2(x, t).item(), rel=1e-5)
    assert "_FusedLoss" in type(ours(x.requires_grad_(), y).grad_fn).__name__


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_inside_torch_compile(backend):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    x, y = torch.randn(32, 6), torch.randint(0, 4, (32,))
    loss_fn = ft.CrossEntropyLoss(label_smoothing=0.05)

    def step(m):
        m.zero_grad()
        loss = loss_fn(m(x), y)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in m.parameters()]
    eager_loss, eager_grads = step(model)
    compiled = torch.compile(model, backend=backend)

    def cstep():
        model.zero_grad()
        loss = torch.compile(lambda a: loss_fn(compiled(a), y), backend=backend)(x)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]
    c_loss, c_grads = cstep()
    assert c_loss.item() == pytest.approx(eager_loss.item(), rel=1e-6)
    for a, b in zip(c_grads, eager_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_training_with_the_module_matches_torch():
    """A few SGD steps of a small classifier: the same parameters either way."""
    torch.manual_seed(1)
    x, y = torch.randn(64, 8, dtype=torch.float64), torch.randint(0, 3, (64,))
    models = []
    for loss_fn in (ft.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()):
        torch.manual_seed(2)
        m = torch.nn.Linear(8, 3).double()
        opt = torch.optim.SGD(m.parameters(), lr=0.5)
        for _ in range(20):
            opt.zero_grad()
            loss_fn(m(x), y).backward()
            opt.step()
        models.append(m)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


BAD = [
    (TypeError, "input", lambda: FF.cross_entropy(torch.randn(3, 4).half(), torch.tensor([0, 1, 2]))),
    (ValueError, "input", lambda: FF.cross_entropy(torch.randn(3, 4, device="meta"),
                                                   torch.tensor([0, 1, 2]))),
    (TypeError, "input", lambda: FF.cross_entropy(np.zeros((3, 4)), torch.tensor([0, 1, 2]))),
    (ValueError, "input", lambda: FF.cross_entropy(torch.randn(4), torch.tensor(1))),
    (ValueError, "target", lambda: FF.cross_entropy(torch.randn(3, 4), torch.tensor([0, 4, 1]))),
    (ValueError, "target", lambda: FF.cross_entropy(torch.randn(3, 4),
                                                    torch.rand(3, 4, requires_grad=True))),
    (ValueError, "weight", lambda: FF.cross_entropy(torch.randn(3, 4), torch.tensor([0, 1, 2]),
                                                    weight=torch.ones(3))),
    (ValueError, "label_smoothing", lambda: FF.cross_entropy(
        torch.randn(3, 4), torch.tensor([0, 1, 2]), label_smoothing=float("nan"))),
    (ValueError, "target", lambda: FF.binary_cross_entropy_with_logits(torch.randn(3, 4),
                                                                       torch.rand(3, 5))),
    (ValueError, "pos_weight", lambda: FF.binary_cross_entropy_with_logits(
        torch.randn(3, 4), torch.rand(3, 4), pos_weight=torch.ones(3, 4))),
]


@pytest.mark.parametrize("exc,name,call", BAD, ids=[b[1] for b in BAD])
def test_bad_input_names_the_argument(exc, name, call):
    with pytest.raises(exc) as info:
        call()
    assert name in str(info.value), str(info.value)
