"""Makes the .npz data files of the shipped scenarios (real_models.yaml, classic_failures.yaml). Deterministic:
running it again gives the same files. `python scenarios/data/make_data.py` from the repository root."""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def sequences(n: int = 384, steps: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy sine waves (n, steps, 1); label 1 when the frequency is high (3–4 cycles in the window), 0 when low
    (1–2 cycles). Phase and amplitude are random: the model has to see the frequency."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    cycles = np.where(label == 1, rng.uniform(3, 4, n), rng.uniform(1, 2, n))
    t = np.linspace(0, 1, steps, endpoint=False)
    phase = rng.uniform(0, 2 * np.pi, n)
    amplitude = rng.uniform(0.5, 1.5, n)
    x = amplitude[:, None] * np.sin(2 * np.pi * cycles[:, None] * t[None, :] + phase[:, None])
    x += rng.normal(0, 0.1, x.shape)
    return x[:, :, None].astype(np.float32), label[:, None].astype(np.float32)


def tokens(n: int = 512, length: int = 12, vocab: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Integer token sequences (n, length) over a vocabulary of 30 (0 is never drawn); label 1 when the sequence
    holds more 'positive' tokens (1–5) than 'negative' ones (6–10): a bag-of-words sentiment task."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, vocab, (n, length))
    score = ((x >= 1) & (x <= 5)).sum(axis=1) - ((x >= 6) & (x <= 10)).sum(axis=1)
    keep = score != 0  # no ties: the label is always decided
    x, score = x[keep], score[keep]
    return x.astype(np.int32), (score > 0).astype(np.float32)[:, None]


def running_sum(n: int = 256, steps: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sequences (n, steps, 1) of values in [0, 1); target: their sum over the last steps, unscaled (about 20):
    a recurrent net with ReLU and plain SGD explodes on it."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, steps, 1))
    return x.astype(np.float32), x.sum(axis=(1, 2))[:, None].astype(np.float32)


def main() -> None:
    for name, (x, y) in {
        "sequences": sequences(),
        "tokens": tokens(),
        "running_sum": running_sum(),
    }.items():
        np.savez_compressed(HERE / f"{name}.npz", x=x, y=y)
        print(f"{name}.npz: x {x.shape} {x.dtype}, y {y.shape} {y.dtype}, y mean {float(y.mean()):.3f}")


if __name__ == "__main__":
    main()
