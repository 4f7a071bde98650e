"""The same binary classifier as examples/numpy_trainer.py, as a PyTorch model trained
by ``fusedopt.torch.Adam``.

The training loop is ordinary PyTorch (``zero_grad``, ``BCEWithLogitsLoss``,
``backward``, ``step``); the only fusedopt line is the optimizer, a drop-in for
``torch.optim.Adam`` that updates the parameters in place with fusedopt's multi-tensor
kernel.  ``convention="tf1"`` reproduces TensorFlow 1's Adam as the NumPy example does;
leave it out to get exactly ``torch.optim.Adam``.  Same data, same initial weights, so
the two examples print the same losses (to float32 rounding: torch's matmuls sum in
another order than NumPy's).

    python examples/torch_trainer.py [--steps 300] [--lr 0.01] [--seed 0]

The last line printed is machine-readable:
``final initial_loss=<float> final_loss=<float> accuracy=<float>``.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

import fusedopt.torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from numpy_trainer import init_params, make_data  # noqa: E402  (same data and weights)


def build_model(d: int, hidden: int, seed: int) -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(),
                                torch.nn.Linear(hidden, 1))
    W1, b1, W2, b2 = init_params(d, hidden, seed)
    with torch.no_grad():   # nn.Linear stores W transposed
        model[0].weight.copy_(torch.from_numpy(W1.T.copy()))
        model[0].bias.copy_(torch.from_numpy(b1))
        model[2].weight.copy_(torch.from_numpy(W2.T.copy()))
        model[2].bias.copy_(torch.from_numpy(b2))
    return model


def evaluate(model, X, y, loss_fn):
    with torch.no_grad():
        logits = model(X)
        return loss_fn(logits, y).item(), ((logits > 0) == (y > 0.5)).float().mean().item()


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    Xn, yn = make_data(seed=args.seed)
    X, y = torch.from_numpy(Xn), torch.from_numpy(yn)
    model = build_model(X.shape[1], args.hidden, args.seed)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    # was: torch.optim.Adam(model.parameters(), lr=args.lr)
    opt = fusedopt.torch.Adam(model.parameters(), lr=args.lr, convention="tf1")
    rng = np.random.default_rng(args.seed + 2)

    initial, _ = evaluate(model, X, y, loss_fn)
    print(f"step    0  loss {initial:.4f}")
    order = rng.permutation(len(X))
    pos = 0
    for step in range(1, args.steps + 1):
        if pos + args.batch > len(X):
            order, pos = rng.permutation(len(X)), 0
        idx = torch.from_numpy(order[pos:pos + args.batch])
        pos += args.batch
        opt.zero_grad()
        loss = loss_fn(model(X[idx]), y[idx])
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == args.steps:
            full, acc = evaluate(model, X, y, loss_fn)
            print(f"step {step:4d}  loss {full:.4f}  (batch {loss.item():.4f})  "
                  f"accuracy {acc:.3f}")
    final, acc = evaluate(model, X, y, loss_fn)
    print(f"final initial_loss={initial:.6f} final_loss={final:.6f} accuracy={acc:.4f}")
    return final


if __name__ == "__main__":
    main()
