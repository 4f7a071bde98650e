"""Optimizer checkpoints that lose nothing.

File format (version 1), little-endian::

    b"FUSEDOPT"  b"CKPT\\x00\\x00\\x00\\x01"      magic (16 bytes)
    uint64                                        length of the JSON header
    JSON header (UTF-8)                           kind, hyper-parameters, state layout,
                                                  and for each array: dtype, shape, offset
    raw array bytes                               each C-ordered, 64-byte aligned
    32 bytes                                      SHA-256 of everything before it

Writing is atomic: the file is written under a temporary name in the same directory,
flushed and fsync'ed, then renamed over the target (and the directory fsync'ed), so the
target is always either the previous complete checkpoint or the new one.  Reading checks
the size, the magic and the SHA-256 before anything is parsed, accepts only float32 and
float64 arrays, and never unpickles: a crafted file cannot run code.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from typing import Any, Dict, List, Optional, Union

import numpy as np

MAGIC = b"FUSEDOPTCKPT\x00\x00\x00\x01"
_DTYPES: Dict[str, np.dtype[Any]] = {"<f4": np.dtype("<f4"), "<f8": np.dtype("<f8")}
PathLike = Union[str, "os.PathLike[str]"]


class CheckpointError(ValueError):
    """A checkpoint file is truncated, corrupted, or not a fusedopt checkpoint.

    >>> import fusedopt, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "junk.ckpt")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(b"not a fusedopt checkpoint " * 4)
    >>> try:
    ...     fusedopt.load_optimizer(path)
    ... except fusedopt.CheckpointError as e:
    ...     print("refused:", "bad magic" in str(e))
    refused: True
    """


def _align(n: int) -> int:
    return (n + 63) // 64 * 64


def save(opt: Any, path: PathLike, *, include_params: bool = True) -> None:
    """Writes ``opt``'s state (and its parameters) to ``path`` atomically."""
    sd = opt.state_dict()
    arrays: List[np.ndarray] = []
    layout: List[Dict[str, Any]] = []

    def add(name: str, a: np.ndarray) -> int:
        a = np.ascontiguousarray(a)
        if a.dtype.str not in _DTYPES:
            a = a.astype(a.dtype.newbyteorder("<"))
        layout.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape)})
        arrays.append(a)
        return len(arrays) - 1

    state = {}
    for i, s in sd["state"].items():
        state[str(i)] = {k: (add(f"state/{i}/{k}", v) if isinstance(v, np.ndarray) else v)
                         for k, v in s.items()}
    params = [add(f"params/{i}", p) for i, p in enumerate(opt.params)] if include_params else None
    offset = 0
    for entry, a in zip(layout, arrays):
        entry["offset"] = offset
        entry["nbytes"] = int(a.nbytes)
        offset = _align(offset + a.nbytes)
    header = {
        "format": 1,
        "kind": sd["kind"],
        "param_groups": [dict(g, betas=list(g["betas"])) if "betas" in g else g
                         for g in sd["param_groups"]],
        "state": state,
        "params": params,
        "arrays": layout,
        "check_finite": bool(opt.check_finite),
        "skipped_steps": int(opt.skipped_steps),
    }
    hbytes = json.dumps(header, allow_nan=False).encode("utf-8")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            h = hashlib.sha256()

            def write(b: Union[bytes, memoryview]) -> None:
                h.update(b)
                f.write(b)

            write(MAGIC)
            write(struct.pack("<Q", len(hbytes)))
            write(hbytes)
            pos = 0
            for entry, a in zip(layout, arrays):
                if entry["offset"] > pos:
                    write(b"\0" * (entry["offset"] - pos))
                    pos = entry["offset"]
                if a.nbytes:
                    # (numpy types ndarray as a Buffer only on Python >= 3.12)
                    write(memoryview(a).cast("B"))  # type: ignore[arg-type, unused-ignore]
                pos += a.nbytes
            if offset > pos:
                write(b"\0" * (offset - pos))
            f.write(h.digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:     # some file systems do not support fsync on directories
        pass


def read(path: PathLike) -> Dict[str, Any]:
    """Reads and verifies a checkpoint: returns its header with arrays materialised
    (``header["state"]`` holds arrays, ``header["params"]`` a list of arrays or None)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < len(MAGIC) + 8 + 32:
        raise CheckpointError(f"{os.fspath(path)!r} is truncated ({len(data)} bytes)")
    if data[:len(MAGIC)] != MAGIC:
        raise CheckpointError(f"{os.fspath(path)!r} is not a fusedopt checkpoint (bad magic)")
    body, digest = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointError(f"{os.fspath(path)!r} is corrupted or truncated "
                              "(SHA-256 mismatch)")
    (hlen,) = struct.unpack("<Q", body[len(MAGIC):len(MAGIC) + 8])
    start = len(MAGIC) + 8
    if start + hlen > len(body):
        raise CheckpointError("checkpoint header length exceeds the file")
    try:
        header: Dict[str, Any] = json.loads(body[start:start + hlen].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"checkpoint header is not valid JSON: {e}") from None
    payload = memoryview(body)[start + hlen:]
    try:
        if header.get("format") != 1:
            raise CheckpointError(f"unsupported checkpoint format {header.get('format')!r}")
        arrays = []
        for e in header["arrays"]:  # type: ignore[misc]  # (e: an except name above)
            dt = _DTYPES.get(e["dtype"])
            if dt is None:
                raise CheckpointError(f"array {e['name']!r} has dtype {e['dtype']!r}; only "
                                      "float32 and float64 are allowed")
            shape = tuple(int(s) for s in e["shape"])
            if any(s < 0 for s in shape):
                raise CheckpointError(f"array {e['name']!r} has a negative dimension")
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            off, nbytes = int(e["offset"]), int(e["nbytes"])
            if nbytes != count * dt.itemsize or off < 0 or off + nbytes > len(payload):
                raise CheckpointError(f"array {e['name']!r} does not fit the file")
            arrays.append(np.frombuffer(payload[off:off + nbytes], dtype=dt).reshape(shape)
                          .astype(dt.newbyteorder("="), copy=True))
        state = {int(i): {k: (arrays[v] if k != "step" else v) for k, v in s.items()}
                 for i, s in header["state"].items()}
        params = None if header["params"] is None else [arrays[j] for j in header["params"]]
    except (KeyError, TypeError, IndexError, AttributeError) as e:
        raise CheckpointError(f"checkpoint header is malformed: {e!r}") from None
    header["state"] = state
    header["params"] = params
    for g in header["param_groups"]:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return header


def state_dict_of(header: Dict[str, Any]) -> Dict[str, Any]:
    return {"kind": header["kind"], "state": header["state"],
            "param_groups": header["param_groups"]}


def load_optimizer(path: PathLike, params: Optional[List[np.ndarray]] = None) -> Any:
    """Re-creates the optimizer saved at ``path``.

    Without ``params``, the saved parameter values come back as new arrays
    (``opt.params``); with ``params`` (arrays of the saved shapes and dtypes), the saved
    values are copied into them in place, after everything has been verified.

    >>> import numpy as np, fusedopt, os, tempfile
    >>> opt = fusedopt.Adam([np.ones(3)], lr=0.1); _ = opt.step([np.ones(3)])
    >>> path = os.path.join(tempfile.mkdtemp(), "opt.ckpt")
    >>> opt.save(path)
    >>> again = fusedopt.load_optimizer(path)
    >>> again.params[0], again.state[0]["step"]
    (array([0.9, 0.9, 0.9]), 1)
    """
    from . import _spec

    header = read(path)
    cls = _spec.CLASSES.get(("numpy", header["kind"]))
    if cls is None:
        raise CheckpointError(f"unknown optimizer kind {header['kind']!r}")
    saved = header["params"]
    if params is None:
        if saved is None:
            raise CheckpointError("this checkpoint holds no parameters: pass params=")
        target = saved
    else:
        if isinstance(params, np.ndarray) or not hasattr(params, "__iter__"):
            raise TypeError(f"params must be a list of numpy.ndarray, got "
                            f"{type(params).__name__}")
        target = list(params)
        if saved is not None:
            if len(target) != len(saved):
                raise ValueError(f"params has {len(target)} arrays, the checkpoint "
                                 f"{len(saved)}")
            for k, (p, s) in enumerate(zip(target, saved)):
                if not isinstance(p, np.ndarray) or p.shape != s.shape or p.dtype != s.dtype:
                    raise ValueError(f"params[{k}] must be an array of shape {s.shape} and "
                                     f"dtype {s.dtype}")
    groups = []
    for g in header["param_groups"]:
        hyper = {k: v for k, v in g.items() if k != "params"}
        groups.append(dict(hyper, params=[target[i] for i in g["params"]]))
    opt = cls(groups, check_finite=header.get("check_finite", False))
    opt.load_state_dict(state_dict_of(header))
    opt.skipped_steps = int(header.get("skipped_steps", 0))
    if params is not None and saved is not None:
        for p, s in zip(target, saved):
            p[...] = s
    return opt
