"""L-BFGS with a strong-Wolfe line search, for one image.

Why not `torch.optim.LBFGS`, which this follows (Nocedal & Wright, algorithms 7.4 and 7.5):

* torch's evaluates the current point again at every `step()` call, so checking for an
  early stop every few iterations costs an extra VGG pass each time;
* its first step is a probe of length 1/|g|₁, which for a whole image's gradient is tiny,
  so the line search spends several passes growing it on every new frame. Here the first
  step is sized by `scale`, the inverse curvature the caller learned on the previous frame
  (or, with none, a step that moves no pixel by more than `FIRST_STEP`);
* the caller sees every iteration, so it can stop on a plateau or record a trajectory.

Measured at 256 px (benchmark): 1.30 -> about 1.05 evaluations per iteration.

The line search is ours too (`strong_wolfe`, Nocedal & Wright algorithms 3.5 and 3.6 with
cubic interpolation), not torch's private `torch.optim.lbfgs._strong_wolfe`: the add-on
runs whatever Python and torch the user points it at, and a private function may change
or vanish in any release. Ours also treats a non-finite loss as "too far" (torch's
extrapolates from it). tests/test_lbfgs.py checks it against torch's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

# x -> (loss, gradient of the loss w.r.t. x, same shape as x)
Evaluate = Callable[[torch.Tensor], tuple[float, torch.Tensor]]
# (iterations done, loss now) -> True to stop
Stop = Callable[[int, float], bool]

FIRST_STEP = 0.05  # display units: the largest pixel change of a first step with no scale
MIN_CURVATURE = 1e-10  # pairs with s·y below this would make the Hessian estimate indefinite
# Strong Wolfe constants (Nocedal & Wright's usual choice for quasi-Newton methods, and
# torch's): sufficient decrease c1, curvature c2; at most MAX_EVALUATIONS per line search.
C1, C2, MAX_EVALUATIONS = 1e-4, 0.9, 25
TOLERANCE = 1e-9  # stop zooming when the bracket moves no coordinate by more than this


def _cubic_minimum(a: float, fa: float, ga: float, b: float, fb: float, gb: float,
                   lo: float, hi: float) -> float:
    """Minimizer, clamped to [lo, hi], of the cubic with values f and slopes g at t = a and
    t = b (Nocedal & Wright eq. 3.59); the middle of [lo, hi] if the cubic has none."""
    d1 = ga + gb - 3 * (fa - fb) / (a - b)
    square = d1 * d1 - ga * gb
    if not square >= 0:  # also NaN
        return (lo + hi) / 2
    d2 = math.copysign(math.sqrt(square), b - a)
    t = b - (b - a) * (gb + d2 - d1) / (gb - ga + 2 * d2)
    return min(max(t, lo), hi) if math.isfinite(t) else (lo + hi) / 2


def strong_wolfe(phi: Callable[[float], tuple[float, torch.Tensor]], d: torch.Tensor,
                 f0: float, g0: torch.Tensor, t: float = 1.0) -> tuple[float, torch.Tensor, float, int]:
    """A step t along direction `d` meeting the strong Wolfe conditions
    f(t) <= f0 + C1·t·f'(0) and |f'(t)| <= C2·|f'(0)| (Nocedal & Wright alg. 3.5 and 3.6).

    phi(t): loss and gradient (flat, like d) at x + t·d; f0, g0: at t = 0, where the slope
    g0·d must be negative; t: the first step tried. Returns (loss, gradient, t, evaluations)
    of the best point found: Wolfe, or when the budget runs out the lowest loss seen (t = 0,
    f0, g0 if nothing was lower). A non-finite loss counts as too far.
    """
    slope0 = float(g0.dot(d))
    scale = float(d.abs().max())
    evals = 0

    def probe(t: float) -> tuple[float, float, torch.Tensor, float]:
        nonlocal evals
        evals += 1
        f, g = phi(t)
        return t, f, g, float(g.dot(d))

    def too_high(p: tuple, best_f: float) -> bool:
        return not (p[1] <= f0 + C1 * p[0] * slope0) or p[1] >= best_f

    def wolfe(p: tuple) -> bool:
        return abs(p[3]) <= -C2 * slope0

    prev = (0.0, f0, g0, slope0)
    cur = probe(t)
    while True:  # alg. 3.5: grow the step until a bracket [lo, hi] holds a Wolfe point
        if too_high(cur, prev[1] if prev[0] > 0 else math.inf):
            lo, hi = prev, cur
            break
        if wolfe(cur):
            return cur[1], cur[2], cur[0], evals
        if cur[3] >= 0:
            lo, hi = cur, prev
            break
        if evals >= MAX_EVALUATIONS:
            return cur[1], cur[2], cur[0], evals
        step = _cubic_minimum(*prev[:2], prev[3], *cur[:2], cur[3],
                              cur[0] + 0.01 * (cur[0] - prev[0]), 10 * cur[0])
        prev, cur = cur, probe(step)
    near_end = False
    while evals < MAX_EVALUATIONS and abs(hi[0] - lo[0]) * scale >= TOLERANCE:  # alg. 3.6: zoom
        a, b = sorted((lo[0], hi[0]))
        step = _cubic_minimum(*lo[:2], lo[3], *hi[:2], hi[3], a, b)
        # A step next to an end shrinks the bracket by a hair: allowed once (the cubic may
        # be right), then moved 10% of the bracket inside.
        margin = 0.1 * (b - a)
        if min(b - step, step - a) >= margin:
            near_end = False
        elif near_end or not a < step < b:
            step, near_end = (b - margin if b - step < step - a else a + margin), False
        else:
            near_end = True
        new = probe(step)
        if too_high(new, lo[1]):
            hi = new
        elif wolfe(new):
            return new[1], new[2], new[0], evals
        else:
            if new[3] * (hi[0] - lo[0]) >= 0:
                hi = lo
            lo = new
    return lo[1], lo[2], lo[0], evals


@dataclass
class Result:
    """Where L-BFGS ended. `scale` is s·y / y·y of its last update (None if none)."""

    x: torch.Tensor
    loss: float
    iterations: int
    evaluations: int
    scale: float | None


def _direction(grad: torch.Tensor, pairs: list[tuple[torch.Tensor, torch.Tensor, float]],
               scale: float) -> torch.Tensor:
    """-H·grad by the two-loop recursion; H starts as `scale`·I. pairs: (s, y, 1/y·s)."""
    q = -grad.reshape(-1)
    alphas = []
    for s, y, rho in reversed(pairs):
        alpha = rho * float(s.dot(q))
        q = q - alpha * y
        alphas.append(alpha)
    r = q * scale
    for (s, y, rho), alpha in zip(pairs, reversed(alphas)):
        beta = rho * float(y.dot(r))
        r = r + (alpha - beta) * s
    return r.reshape(grad.shape)


def minimize(evaluate: Evaluate, x: torch.Tensor, iterations: int, history_size: int = 10,
             scale: float | None = None, stop: Stop | None = None) -> Result:
    """Minimize from `x` (not modified) for at most `iterations` line-searched steps.

    evaluate: returns the loss (a float) and its gradient at a point; scale: the inverse
    curvature to start from (a previous `Result.scale` of a similar problem), or None;
    stop: asked after each iteration. Ends early when no descent direction is left (the
    gradient vanished or is not finite) or no step along it lowers the loss.
    """
    x = x.detach().clone()
    loss, grad = evaluate(x)
    evaluations = 1
    if scale is None:
        scale = FIRST_STEP / max(float(grad.abs().max()), 1e-30)
    learned: float | None = None
    pairs: list[tuple[torch.Tensor, torch.Tensor, float]] = []
    done = 0
    while done < iterations:
        d = _direction(grad, pairs, scale).reshape(-1)
        g = grad.reshape(-1)
        slope = float(g.dot(d))
        if not slope < 0:  # converged, or the gradient is not finite
            break

        def along(t: float, x: torch.Tensor = x, d: torch.Tensor = d) -> tuple[float, torch.Tensor]:
            f, g = evaluate(x + t * d.reshape(x.shape))
            return f, g.reshape(-1)

        new_loss, new_grad, t, count = strong_wolfe(along, d, loss, g)
        evaluations += count
        if not new_loss < loss:  # the line search found no decrease (or only NaN): stuck
            break
        step = t * d
        change = new_grad - g
        curvature = float(change.dot(step))
        if curvature > MIN_CURVATURE:
            if len(pairs) == history_size:
                pairs.pop(0)
            pairs.append((step, change, 1.0 / curvature))
            scale = learned = curvature / float(change.dot(change))
        x = x + step.reshape(x.shape)
        loss, grad = float(new_loss), new_grad.reshape(x.shape)
        done += 1
        if stop is not None and stop(done, loss):
            break
    return Result(x, loss, done, evaluations, learned)
