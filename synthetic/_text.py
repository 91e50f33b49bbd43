"""Vectorised string helpers over pyarrow arrays (no per-row Python)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def cat(*parts: pa.Array | str) -> pa.Array:
    """Concatenate arrays and literal strings element-wise (nulls propagate)."""
    return pc.binary_join_element_wise(*parts, "")


def ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """`prefix` + zero-padded integers."""
    digits = pc.utf8_lpad(
        pc.cast(pa.array(np.asarray(numbers, dtype=np.int64)), pa.string()), width, "0"
    )
    return cat(prefix, digits)


def num(values: np.ndarray, width: int = 0) -> pa.Array:
    """Integers as strings, optionally zero-padded."""
    text = pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())
    return pc.utf8_lpad(text, width, "0") if width else text


def pick(vocab: list[str] | pa.Array, index: np.ndarray) -> pa.Array:
    """Vocabulary entries by index."""
    array = vocab if isinstance(vocab, pa.Array) else pa.array(vocab, pa.string())
    return array.take(pa.array(np.asarray(index, dtype=np.int64)))


def where(mask: np.ndarray, a: pa.Array | str | None, b: pa.Array | str | None) -> pa.Array:
    """Element-wise choice between two arrays or scalars (None is null)."""
    a = pa.scalar(a, pa.string()) if a is None or isinstance(a, str) else a
    b = pa.scalar(b, pa.string()) if b is None or isinstance(b, str) else b
    return pc.if_else(pa.array(np.asarray(mask, dtype=bool)), a, b)


def null_where(mask: np.ndarray, values: pa.Array) -> pa.Array:
    """Null out the values where mask is true."""
    return where(mask, None, values)


def iso(seconds: np.ndarray) -> pa.Array:
    """Epoch seconds as ISO-8601 UTC text (`2026-06-30T12:00:00Z`)."""
    ts = pa.array(np.asarray(seconds, dtype="datetime64[s]"))
    text = pc.replace_substring(pc.cast(ts, pa.string()), " ", "T")
    return cat(text, "Z")


def typo(values: pa.Array, rng: np.random.Generator, width: int = 24) -> pa.Array:
    """One random edit per value (swap, drop, double or replace a letter), via a code-point grid."""
    arr = np.asarray(values.to_numpy(zero_copy_only=False), dtype=f"U{width}")
    n = len(arr)
    if n == 0:
        return values
    grid = arr.view(np.uint32).reshape(n, width).copy()
    length = np.asarray(pc.utf8_length(values).to_numpy(zero_copy_only=False), dtype=np.int64)
    length = np.minimum(length, width - 1)
    pos = (rng.random(n) * np.maximum(length - 1, 1)).astype(np.int64) + 1  # keep first letter
    pos = np.minimum(pos, np.maximum(length - 1, 0))
    kind = rng.integers(0, 4, n)
    cols = np.arange(width)[None, :]
    rows = np.arange(n)
    out = grid.copy()
    # swap pos-1 and pos
    sw = kind == 0
    out[rows[sw], pos[sw] - 1] = grid[rows[sw], pos[sw]]
    out[rows[sw], pos[sw]] = grid[rows[sw], pos[sw] - 1]
    # drop pos: shift the tail left
    dr = (kind == 1) & (length > 3)
    shift_left = np.where(cols >= pos[:, None], np.minimum(cols + 1, width - 1), cols)
    out[dr] = np.take_along_axis(grid[dr], shift_left[dr], axis=1)
    # double pos: shift the tail right
    du = kind == 2
    shift_right = np.where(cols > pos[:, None], cols - 1, cols)
    out[du] = np.take_along_axis(grid[du], shift_right[du], axis=1)
    # replace pos with a random lowercase letter
    rp = kind == 3
    out[rows[rp], pos[rp]] = rng.integers(ord("a"), ord("z") + 1, rp.sum()).astype(np.uint32)
    text = out.view(f"U{width}").reshape(n)
    return pa.array(text, pa.string())
