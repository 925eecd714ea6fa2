"""Shared scenario texts for the plugin tests. Epoch counts are small: these train real Keras models."""

from __future__ import annotations

# The motivating case, cut down: 20 points, Dense(1), MSE.
HEADER = """\
defaults:
  data: {x: {arange: [1, 21]}, y: "0.5 * x"}
  model: [{Dense: {units: 1}}]
  loss: mean_squared_error
  optimizer: sgd
  epochs: 30
  seed: 0
scenarios:
"""
DIVERGES = """\
  - name: sgd-default-lr-diverges
    expect: {diverges: {within_epochs: 30}}
"""
CONVERGES_BUT_DIVERGES = """\
  - name: sgd-default-lr-converges
    expect: {converges: {loss_below: 0.01}}
"""
PREDICTS = """\
  - name: sgd-scaled-data-predicts
    data: {x: {linspace: [0, 1, 20]}}
    optimizer: {name: sgd, learning_rate: 0.6}
    epochs: 100
    expect: {predict: {x: 2, y: 1.0, abs_tol: 0.05}}
"""
