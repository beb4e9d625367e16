"""Our strong-Wolfe line search against torch's private one, which it replaces."""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from engine import lbfgs

torch_lbfgs = pytest.importorskip("torch.optim.lbfgs")
torch_wolfe = torch_lbfgs._strong_wolfe  # the reference


def rosenbrock(x: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Extended Rosenbrock (minimum 0 at all ones) and its gradient."""
    x = x.detach().double().requires_grad_(True)
    f = (100 * (x[1::2] - x[::2] ** 2) ** 2 + (1 - x[::2]) ** 2).sum()
    f.backward()
    return float(f.detach()), x.grad


def quadratic(n: int = 20, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    a = torch.rand(n, n, generator=generator, dtype=torch.float64)
    hessian = a @ a.t() + 0.1 * torch.eye(n, dtype=torch.float64)
    solution = torch.rand(n, generator=generator, dtype=torch.float64)

    def evaluate(x):
        r = x - solution
        return float(0.5 * r @ hessian @ r), hessian @ r
    return evaluate, solution


def both(evaluate, x, d, t):
    """(ours, torch's): (loss, gradient, t, evaluations) of a line search from x along d."""
    f0, g0 = evaluate(x)
    ours = lbfgs.strong_wolfe(lambda s: evaluate(x + s * d), d, f0, g0, t)
    theirs = torch_wolfe(lambda x_, s, d_: evaluate(x_ + s * d_), x, t, d, f0, g0, g0.dot(d))
    return f0, g0, ours, theirs


def satisfies_strong_wolfe(f0, g0, d, f, g, t) -> bool:
    slope0 = float(g0.dot(d))
    return f <= f0 + lbfgs.C1 * t * slope0 and abs(float(g.dot(d))) <= lbfgs.C2 * abs(slope0)


STARTS = [[-1.2, 1.0], [0.0, 0.0], [2.0, -1.0], [-1.2, 1.0, 0.5, 0.3, 1.5, 2.5]]


@pytest.mark.parametrize("start", STARTS)
@pytest.mark.parametrize("t", [1e-4, 1e-2, 1.0, 30.0])
def test_line_search_on_rosenbrock_meets_strong_wolfe_like_torchs(start, t):
    x = torch.tensor(start, dtype=torch.float64)
    d = -rosenbrock(x)[1]
    f0, g0, ours, theirs = both(rosenbrock, x, d, t)
    assert satisfies_strong_wolfe(f0, g0, d, ours[0], ours[1], ours[2])
    assert satisfies_strong_wolfe(f0, g0, d, float(theirs[0]), theirs[1], theirs[2])
    assert ours[3] <= theirs[3] + 2, (ours[3], theirs[3])  # evaluations: as frugal


def test_line_search_on_a_quadratic_lands_on_the_exact_minimum_once_bracketed():
    evaluate, _ = quadratic()
    x = torch.zeros(20, dtype=torch.float64)
    g = evaluate(x)[1]
    d = -g
    exact = float(g.dot(g) / (d @ (evaluate(d)[1] - evaluate(torch.zeros_like(d))[1])))
    f0, g0, ours, theirs = both(evaluate, x, d, 100 * exact)  # overshoot: bracket, then zoom
    assert ours[2] == pytest.approx(exact, rel=1e-6)  # a cubic fits a quadratic exactly
    assert ours[3] == theirs[3] == 2


def test_a_step_into_nan_is_treated_as_too_far():
    # torch's search extrapolates from a NaN loss; ours backs off and still descends.
    def evaluate(x):
        if float(x[0]) > 0.5:
            return math.nan, torch.full_like(x, math.nan)
        return float((x - 2).pow(2).sum()), 2 * (x - 2)

    x = torch.zeros(1, dtype=torch.float64)
    f, g, t, evals = lbfgs.strong_wolfe(lambda s: evaluate(x + s), torch.ones(1, dtype=torch.float64),
                                        4.0, torch.full((1,), -4.0, dtype=torch.float64), t=1.0)
    assert math.isfinite(f) and f < 4.0 and 0 < t <= 0.5


def _with_torchs_line_search(monkeypatch):
    def adapter(phi, d, f0, g0, t=1.0):
        f, g, t, n = torch_wolfe(lambda x_, s, d_: phi(s), d, t, d, f0, g0, g0.dot(d))
        return float(f), g, float(t), n
    monkeypatch.setattr(lbfgs, "strong_wolfe", adapter)


@pytest.mark.parametrize("problem", ["rosenbrock", "quadratic"])
def test_lbfgs_with_our_line_search_converges_as_with_torchs(problem, monkeypatch):
    if problem == "rosenbrock":
        evaluate, solution, start = rosenbrock, torch.ones(6, dtype=torch.float64), torch.tensor(STARTS[-1], dtype=torch.float64)
    else:
        (evaluate, solution), start = quadratic(), torch.zeros(20, dtype=torch.float64)
    ours = lbfgs.minimize(evaluate, start, iterations=200)
    _with_torchs_line_search(monkeypatch)
    theirs = lbfgs.minimize(evaluate, start, iterations=200)
    for result in (ours, theirs):
        assert torch.allclose(result.x, solution, atol=1e-4), result
    assert ours.evaluations <= 1.2 * theirs.evaluations + 5, (ours.evaluations, theirs.evaluations)


def test_the_engine_runs_on_a_torch_without_the_private_line_search(monkeypatch):
    monkeypatch.delattr(torch_lbfgs, "_strong_wolfe")
    module = importlib.reload(lbfgs)  # what a torch release without it would see
    evaluate, solution = quadratic()
    result = module.minimize(evaluate, torch.zeros(20, dtype=torch.float64), iterations=100)
    assert torch.allclose(result.x, solution, atol=1e-4)
