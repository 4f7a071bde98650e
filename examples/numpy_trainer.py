"""A binary classifier trained by a plain NumPy loop on fusedopt's kernels.

The two-moons classifier: a small MLP whose logits go through sigmoid cross-entropy
(mean over the batch) and whose parameters are updated by Adam as TensorFlow 1's
``tf.compat.v1.train.AdamOptimizer`` does it (``convention="tf1"``).  Each step is:
forward in NumPy, loss and its gradient in one fused pass
(``fusedopt.sigmoid_cross_entropy_and_grad``), backward by hand, and one in-place Adam
update of every parameter array (``fusedopt.Adam.step``: one C call for all of them).

    python examples/numpy_trainer.py [--steps 300] [--lr 0.01] [--seed 0]

The last line printed is machine-readable:
``final initial_loss=<float> final_loss=<float> accuracy=<float>``.
"""
from __future__ import annotations

import argparse

import numpy as np

import fusedopt


def make_data(n: int = 2048, d: int = 20, seed: int = 0):
    """Two classes separated by a noisy non-linear boundary (float32, labels 0/1)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.standard_normal(d)
    score = X @ w + 0.5 * np.sin(3.0 * X[:, 0]) * np.abs(w).sum() / 4 \
        + 0.3 * rng.standard_normal(n)
    y = (score > 0).astype(np.float32).reshape(-1, 1)
    return X, y


def init_params(d: int, hidden: int, seed: int):
    rng = np.random.default_rng(seed + 1)
    W1 = (rng.standard_normal((d, hidden)) * np.sqrt(2.0 / d)).astype(np.float32)
    b1 = np.zeros(hidden, dtype=np.float32)
    W2 = (rng.standard_normal((hidden, 1)) * np.sqrt(1.0 / hidden)).astype(np.float32)
    b2 = np.zeros(1, dtype=np.float32)
    return [W1, b1, W2, b2]


def forward(params, X):
    W1, b1, W2, b2 = params
    h_pre = X @ W1 + b1
    h = np.maximum(h_pre, 0.0)
    logits = h @ W2 + b2
    return logits, (X, h_pre, h)


def backward(params, cache, dlogits):
    """Gradients of the loss w.r.t. W1, b1, W2, b2 given d loss / d logits."""
    W1, b1, W2, b2 = params
    X, h_pre, h = cache
    dW2 = h.T @ dlogits
    db2 = dlogits.sum(axis=0)
    dh = dlogits @ W2.T
    dh_pre = dh * (h_pre > 0)
    dW1 = X.T @ dh_pre
    db1 = dh_pre.sum(axis=0)
    return [dW1, db1, dW2, db2]


def evaluate(params, X, y):
    logits, _ = forward(params, X)
    loss = fusedopt.sigmoid_cross_entropy(logits, y)
    acc = float(((logits > 0) == (y > 0.5)).mean())
    return loss, acc


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    X, y = make_data(seed=args.seed)
    params = init_params(X.shape[1], args.hidden, args.seed)
    opt = fusedopt.Adam(params, lr=args.lr, convention="tf1")
    rng = np.random.default_rng(args.seed + 2)

    initial, _ = evaluate(params, X, y)
    print(f"step    0  loss {initial:.4f}")
    order = rng.permutation(len(X))
    pos = 0
    for step in range(1, args.steps + 1):
        if pos + args.batch > len(X):          # a new epoch: reshuffle
            order, pos = rng.permutation(len(X)), 0
        idx = order[pos:pos + args.batch]
        pos += args.batch
        logits, cache = forward(params, X[idx])
        loss, dlogits = fusedopt.sigmoid_cross_entropy_and_grad(logits, y[idx])
        opt.step(backward(params, cache, dlogits))
        if step % 50 == 0 or step == args.steps:
            full, acc = evaluate(params, X, y)
            print(f"step {step:4d}  loss {full:.4f}  (batch {loss:.4f})  accuracy {acc:.3f}")
    final, acc = evaluate(params, X, y)
    print(f"final initial_loss={initial:.6f} final_loss={final:.6f} accuracy={acc:.4f}")
    return final


if __name__ == "__main__":
    main()
