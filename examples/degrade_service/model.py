"""The example's models, both in numpy and trained here on the same synthetic fraud data:

- the primary: a small neural network (one hidden layer, trained with Adam), which
  also learns an interaction between two features;
- the fallback: a logistic regression, which cannot, so it is less accurate: its
  answers are a real degradation.

Weights are saved as ``.npz`` and loaded without pickle, so a weights file cannot run
code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FEATURES = 8
HIDDEN = 32

Array = npt.NDArray[Any]


def synthetic_data(n: int, seed: int = 0) -> tuple[Array, Array]:
    """Transactions (``n`` x FEATURES) and their fraud labels (0/1)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FEATURES)).astype(np.float32)
    logit = x @ np.linspace(-1.5, 1.5, FEATURES, dtype=np.float32) + 2.0 * x[:, 0] * x[:, 1]
    return x, (logit > 0.5).astype(np.float32)


def _sigmoid(z: Array) -> Array:
    return 1 / (1 + np.exp(-z))


def _forward(p: dict[str, Array], x: Array) -> tuple[Array, Array]:
    """(hidden activations, fraud probabilities) of the network."""
    hidden = np.maximum(x @ p["w1"] + p["b1"], 0)
    return hidden, _sigmoid(hidden @ p["w2"] + p["b2"])


def train_primary(path: Path, *, samples: int = 2000, steps: int = 300) -> Path:
    """Train the network (full-batch Adam on the logistic loss); save it to ``path``."""
    x, labels = synthetic_data(samples)
    y = labels[:, None]
    rng = np.random.default_rng(0)
    p = {
        "w1": rng.normal(0, 0.5, (FEATURES, HIDDEN)).astype(np.float32),
        "b1": np.zeros(HIDDEN, np.float32),
        "w2": rng.normal(0, 0.5, (HIDDEN, 1)).astype(np.float32),
        "b2": np.zeros(1, np.float32),
    }
    mean = {k: np.zeros_like(v) for k, v in p.items()}
    square = {k: np.zeros_like(v) for k, v in p.items()}
    for step in range(1, steps + 1):
        hidden, prob = _forward(p, x)
        dz = (prob - y) / samples
        dh = (dz @ p["w2"].T) * (hidden > 0)
        grads = {"w2": hidden.T @ dz, "b2": dz.sum(0), "w1": x.T @ dh, "b1": dh.sum(0)}
        for k, g in grads.items():
            mean[k] = 0.9 * mean[k] + 0.1 * g
            square[k] = 0.999 * square[k] + 0.001 * g**2
            m_hat, v_hat = mean[k] / (1 - 0.9**step), square[k] / (1 - 0.999**step)
            p[k] -= (0.02 * m_hat / (np.sqrt(v_hat) + 1e-8)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, w1=p["w1"], b1=p["b1"], w2=p["w2"], b2=p["b2"])
    return path


def train_small(path: Path, *, samples: int = 2000, steps: int = 300) -> Path:
    """Fit the logistic regression (gradient descent); save it to ``path``."""
    x, y = synthetic_data(samples)
    w, b = np.zeros(FEATURES, np.float32), 0.0
    for _ in range(steps):
        prob = _sigmoid(x @ w + b)
        w -= 0.5 * (x.T @ (prob - y)) / samples
        b -= 0.5 * float(np.mean(prob - y))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, weights=w, bias=np.array([b], np.float32))
    return path


def _load(path: Path) -> dict[str, Array]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


class PrimaryModel:
    def __init__(self, path: Path) -> None:
        self._p = _load(path)

    def score(self, features: list[float]) -> float:
        return float(_forward(self._p, np.asarray([features], np.float32))[1][0, 0])


class SmallModel:
    def __init__(self, path: Path) -> None:
        p = _load(path)
        self.weights, self.bias = p["weights"], float(p["bias"][0])

    def score(self, features: list[float]) -> float:
        return float(_sigmoid(np.asarray(features, np.float32) @ self.weights + self.bias))


def accuracy(score: Callable[[list[float]], float], samples: int = 1000) -> float:
    """Share of fresh synthetic transactions that ``score`` classifies right."""
    x, y = synthetic_data(samples, seed=1)
    hits = sum((score(row.tolist()) >= 0.5) == bool(label) for row, label in zip(x, y, strict=True))
    return hits / samples
