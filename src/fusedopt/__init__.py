"""fusedopt: fused CPU kernels for training.

The loss and its gradient in one pass over memory (sigmoid and softmax cross-entropy
with logits, L1, L2) and optimizer updates applied in place (Adam, AdamW, SGD with momentum/Nesterov,
Lion, Adagrad, RMSprop, Adafactor, LAMB),
reproducing the update rules of torch, TF1, Keras, optax and scikit-learn
(``convention=``).  ``fusedopt.reference`` states every formula in plain NumPy.

>>> import numpy as np, fusedopt
>>> logits = np.array([0.0, 2.0, -1.0], dtype=np.float32)
>>> labels = np.array([0, 1, 1], dtype=np.uint8)
>>> loss, grad = fusedopt.sigmoid_cross_entropy_and_grad(logits, labels)
>>> round(loss, 6)
0.711112
>>> grad.round(4)
array([ 0.1667, -0.0397, -0.2437], dtype=float32)
"""
from ._runtime import (cpu_info, get_num_threads, set_adaptive_threads, set_num_threads,
                       _select_from_env)
from ._losses import (l1_loss, l1_loss_and_grad, l2_loss, l2_loss_and_grad,
                      sigmoid_cross_entropy, sigmoid_cross_entropy_and_grad,
                      softmax_cross_entropy, softmax_cross_entropy_and_grad)
from ._checkpoint import CheckpointError, load_optimizer
from ._clip import clip_grad_norm_
from ._optim import (SGD, Adam, AdamW, Lion, Adagrad, RMSprop, Adafactor, LAMB, adam_step,
                     sgd_step, lion_step, adagrad_step, rmsprop_step, adafactor_step,
                     lamb_step,
                     CONVENTIONS, all_finite, unscale_and_check, FRONT_END as _FRONT_END)

__version__ = "0.1.0"

__all__ = [
    "sigmoid_cross_entropy", "sigmoid_cross_entropy_and_grad",
    "softmax_cross_entropy", "softmax_cross_entropy_and_grad",
    "l1_loss", "l1_loss_and_grad", "l2_loss", "l2_loss_and_grad",
    "adam_step", "sgd_step", "lion_step", "adagrad_step", "rmsprop_step", "adafactor_step",
    "lamb_step", "Adam", "AdamW", "SGD", "Lion", "Adagrad", "RMSprop", "Adafactor", "LAMB",
    "CONVENTIONS",
    "clip_grad_norm_", "unscale_and_check", "all_finite", "load_optimizer", "CheckpointError",
    "cpu_info", "set_num_threads", "get_num_threads", "set_adaptive_threads", "__version__",
]
# every optimizer described in fusedopt._spec (the names above and any other)
globals().update(_FRONT_END)
__all__ += [name for name in _FRONT_END if name not in __all__]

_select_from_env()
