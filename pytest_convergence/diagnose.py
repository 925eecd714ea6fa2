"""Why a loss grows or decays: the stability bound of gradient descent, from the Hessian of the loss.

For a model linear in its parameters under MSE (one Dense layer, no activation) the Hessian is
exact and constant: H = (2/(n·k))·X̃ᵀX̃ per output, with X̃ = X plus a ones column when there is
a bias, n samples and k outputs (Keras's MSE averages over both). Plain gradient descent with
full batches multiplies the error along eigenvector i by (1 − lr·λᵢ) per step, so the loss along it
by (1 − lr·λᵢ)²; it is stable only while lr < 2/λmax. For other models λmax (the sharpness) is
estimated at the initial weights by the training side (Hessian-vector products) and the same
quantities are reported, labelled as estimates.

Pure numpy: no Keras, no pytest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .text import fmt

if TYPE_CHECKING:
    from .spec import Expect

MSE_NAMES = frozenset({"mse", "mean_squared_error", "MeanSquaredError"})
FLOOR = 1e-7  # losses below this fraction of the first are float32 rounding, not the decay rate
ZERO_CURVATURE = 1e-12  # |λmax| at or below this: the loss is flat at these weights


@dataclass(frozen=True)
class Optimizer:
    """What the bound depends on: the optimizer's name, its learning rate and momentum."""

    name: str  # as Keras names the class, lower case: sgd, adam, rmsprop …
    learning_rate: float
    momentum: float = 0.0
    nesterov: bool = False
    learning_rate_source: str = ""  # where a schedule gives the rate: "ExponentialDecay at step 0"

    @property
    def plain_sgd(self) -> bool:
        return self.name == "sgd" and self.momentum == 0.0


@dataclass(frozen=True)
class Diagnosis:
    """The stability analysis of one scenario (one seed's curve for the measured factor)."""

    method: str  # "exact" (linear model, MSE) or "estimate" (Hessian-vector products at the initial weights)
    lam_max: float
    learning_rate: float
    bound: float  # the largest stable learning rate for this optimizer (plain GD: 2/λmax)
    bound_formula: str
    steps_per_epoch: int
    optimizer: str
    measured_factor: float | None  # loss × per epoch, from the curve
    suggested_lr: float
    lam_min: float | None = None  # exact only
    predicted_factor: float | None = None  # loss × per epoch, when it can be predicted
    predicted_by: str | None = None  # the formula that predicts it
    standardised: tuple[float, float] | None = None  # (λmax, bound) if x were standardised (exact only)
    advisory: tuple[str, ...] = field(default=())  # why the bound is not exact here
    seed: int | None = None  # whose curve gave the measured factor (and, for estimates, the initial weights)
    goal: str = "converges"  # what the scenario expects of the loss (see goal_of): the advice serves it

    @property
    def flat(self) -> bool:
        """No curvature at all: λmax is 0 (to float rounding), so the gradient is zero too: dead units or
        saturated activations, and no learning rate moves the loss."""
        return abs(self.lam_max) <= ZERO_CURVATURE

    @property
    def ratio(self) -> float:
        """The configured learning rate as a multiple of the bound (>1: unstable)."""
        return self.learning_rate / self.bound

    @property
    def exact(self) -> bool:
        return self.method == "exact" and not self.advisory

    @property
    def lr_below_bound(self) -> bool:
        return self.learning_rate < self.bound

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(ratio=self.ratio, exact=self.exact, lr_below_bound=self.lr_below_bound)
        return out

    def lines(self) -> list[str]:
        """The diagnosis as an expert would say it, with numbers."""
        if self.method == "exact":
            head = "exact" if self.exact else "advisory"
            source = "linear model under MSE, H = (2/n)·XᵀX"
        else:
            head, source = "estimate", "sharpness at the initial weights by Hessian-vector products"
        whose = f", seed {self.seed}" if self.seed is not None else ""
        if self.flat:
            return [
                f"why — stability ({head}: {source}{whose}):",
                f"  λmax = {fmt(self.lam_max)}: zero gradient — the loss is flat at these weights (dead units: ReLUs "
                "that output 0 for every sample; or saturated activations), so no learning rate moves it and there "
                "is no stability bound to state",
                "  look at the initialisation and the activations (LeakyReLU, a smaller learning rate before units "
                "die, scaled inputs) rather than at the learning rate now",
                *(f"  note: {reason}" for reason in self.advisory),
            ]
        lam_min = f", λmin = {fmt(self.lam_min)}" if self.lam_min is not None else ""
        side = "above it: expect the loss to grow" if self.ratio >= 1 else "below it"
        if self.ratio >= 1 and self.measured_factor is not None and self.measured_factor <= 1:
            side = "above it, yet the loss did not grow (measured factor below): the curvature it saw changed"
        out = [
            f"why — stability ({head}: {source}{whose}):",
            f"  λmax = {fmt(self.lam_max)}{lam_min} → bound lr < {self.bound_formula} = {fmt(self.bound)}",
            f"  learning rate {fmt(self.learning_rate)} ({self.optimizer}) is ×{self.ratio:.4g} the bound, {side}",
        ]
        steps = f"{self.steps_per_epoch} step{'s' if self.steps_per_epoch > 1 else ''} per epoch"
        if self.predicted_factor is not None:
            measured = f", measured ×{_factor(self.measured_factor)}" if self.measured_factor is not None else ""
            out.append(
                f"  loss factor per epoch: predicted ×{_factor(self.predicted_factor)} = {self.predicted_by}"
                f"{measured} ({steps})"
            )
        elif self.measured_factor is not None:
            out.append(f"  loss factor per epoch: measured ×{_factor(self.measured_factor)} ({steps})")
        out.extend(self._advice())
        out.extend(f"  note: {reason}" for reason in self.advisory)
        return out

    def _advice(self) -> list[str]:
        """What to change, where it serves the expectation: a stable learning rate for a scenario that should
        converge; for one that should diverge, only the fact that its learning rate is below the bound."""
        if self.goal == "diverges":
            if self.ratio >= 1:
                return []
            return [f"  to diverge as expected, the learning rate must exceed the bound {fmt(self.bound)}"]
        if self.goal != "converges":  # metric or raises alone: a lower loss may not be what the scenario wants
            return []
        rate = " (2/(λmax+λmin): the fastest convergence)" if self.predicted_factor is not None else ""
        tries = [f"lr ≈ {fmt(self.suggested_lr)}{rate}"]
        if self.standardised is not None:
            lam, bound = self.standardised
            tries.append(f"standardise x (mean 0, std 1), giving λmax = {fmt(lam)} and bound {fmt(bound)}")
        return [f"  try {' or '.join(tries)}"]


def goal_of(expect: Expect) -> str:
    """What a scenario's expectations ask of the loss: "diverges", "converges" (converges or predict), or "other"
    (metrics or raises alone, which may pin down a failure: no advice to converge)."""
    if expect.diverges is not None:
        return "diverges"
    if expect.converges is not None or expect.predict is not None:
        return "converges"
    return "other"


def _factor(value: float | None) -> str:
    return "?" if value is None else f"{value:.4g}"


def linear_hessian(x: np.ndarray, bias: bool, outputs: int = 1) -> np.ndarray:
    """The Hessian of Keras's MSE w.r.t. one output's weights (and bias) of a linear layer."""
    xt = np.asarray(x, dtype=np.float64)
    if bias:
        xt = np.hstack([xt, np.ones((len(xt), 1))])
    return (2.0 / (len(xt) * outputs)) * (xt.T @ xt)


def exact(
    x: np.ndarray,
    bias: bool,
    outputs: int,
    optimizer: Optimizer,
    steps: int,
    losses: Sequence[float] = (),
) -> Diagnosis:
    """The analytic diagnosis of a linear model under MSE, trained `steps` batches per epoch."""
    eigs = np.linalg.eigvalsh(linear_hessian(x, bias, outputs))
    lam_max, lam_min = float(eigs[-1]), float(max(eigs[0], 0.0))
    advisory = _caveats(steps, optimizer)
    bound, formula = _bound(lam_max, optimizer)
    predicted, predicted_by = None, None
    if optimizer.plain_sgd:
        # the slowest-decaying (or fastest-growing) eigendirection sets the loss's rate in the end
        lr = optimizer.learning_rate
        top = (1.0 - lr * lam_max) ** 2 >= (1.0 - lr * lam_min) ** 2
        predicted = max((1.0 - lr * lam_max) ** 2, (1.0 - lr * lam_min) ** 2) ** steps
        power = "²" if steps == 1 else f"^(2·{steps})"
        predicted_by = f"(1 − lr·{'λmax' if top else 'λmin'}){power}"
    std = np.std(x, axis=0)
    scaled = (x - np.mean(x, axis=0)) / np.where(std > 0, std, 1.0)
    lam_std = float(np.linalg.eigvalsh(linear_hessian(scaled, bias, outputs))[-1])
    return Diagnosis(
        method="exact",
        lam_max=lam_max,
        lam_min=lam_min,
        learning_rate=optimizer.learning_rate,
        bound=bound,
        bound_formula=formula,
        steps_per_epoch=steps,
        optimizer=_describe(optimizer),
        predicted_factor=predicted,
        predicted_by=predicted_by,
        measured_factor=measured_factor(losses),
        # the rate-optimal step for a quadratic: the extreme eigendirections decay equally fast
        suggested_lr=2.0 / (lam_max + lam_min) if optimizer.plain_sgd else bound / 2,
        standardised=(lam_std, _bound(lam_std, optimizer)[0]),
        advisory=advisory,
    )


def estimated(lam_max: float, optimizer: Optimizer, steps: int, losses: Sequence[float] = ()) -> Diagnosis:
    """The diagnosis of any other model from its estimated sharpness at the initial weights."""
    advisory = (
        "λmax is the sharpness at the initial weights; it changes as the model trains (often rising "
        "towards 2/lr: the edge of stability), so the bound is a guide, not a guarantee",
        *_caveats(steps, optimizer),
    )
    bound, formula = _bound(abs(lam_max), optimizer)
    return Diagnosis(
        "estimate",
        lam_max,
        optimizer.learning_rate,
        bound,
        formula,
        steps,
        _describe(optimizer),
        measured_factor(losses),
        suggested_lr=bound / 2,
        advisory=advisory,
    )


def _bound(lam_max: float, optimizer: Optimizer) -> tuple[float, str]:
    """The largest stable learning rate, and how it was computed."""
    if lam_max <= 0:
        return math.inf, "2/λmax"
    if optimizer.name == "sgd" and optimizer.momentum and not optimizer.nesterov:
        return 2.0 * (1.0 + optimizer.momentum) / lam_max, "2(1+β)/λmax"  # heavy-ball momentum, a quadratic
    return 2.0 / lam_max, "2/λmax"


def _caveats(steps: int, optimizer: Optimizer) -> tuple[str, ...]:
    caveats = []
    if steps > 1:
        caveats.append(
            f"{steps} mini-batches per epoch: each step sees a batch's Hessian, not the full one, so the "
            "bound and the predicted factor (full-H steps) are approximate"
        )
    if optimizer.name == "sgd" and optimizer.momentum:
        kind = "Nesterov momentum" if optimizer.nesterov else "momentum"
        caveats.append(
            f"{kind} {optimizer.momentum:g}: the bound is the heavy-ball one for a quadratic, "
            "and no per-epoch factor is predicted"
        )
    elif optimizer.name != "sgd":
        caveats.append(
            f"{optimizer.name} adapts its step per parameter, so the gradient-descent bound does not apply "
            "as such; it shows how sharp the loss is against the learning rate"
        )
    return tuple(caveats)


def _describe(optimizer: Optimizer) -> str:
    extra = f", momentum {optimizer.momentum:g}" if optimizer.momentum else ""
    source = f"; {optimizer.learning_rate_source}" if optimizer.learning_rate_source else ""
    return f"{optimizer.name}{extra}{source}"


def measured_factor(losses: Sequence[float]) -> float | None:
    """The loss's per-epoch factor from the curve: the geometric mean over the later half of the
    epochs whose loss is finite and above float32's rounding floor (the early epochs mix directions)."""
    values = [v for v in losses if math.isfinite(v)]
    if len(values) < 3 or values[0] <= 0:
        return None
    usable = [i for i, v in enumerate(values) if v > FLOOR * values[0]]
    end = usable[-1] if usable else 0
    start = end // 2
    if end - start < 2:
        return None
    return float((values[end] / values[start]) ** (1.0 / (end - start)))
