"""Logistic mixed model with crossed random intercepts for reader and case (as lme4::glmer fits it).

    logit P(correct) = beta0 + reader effect + case effect,  effects ~ N(0, sd_reader^2), N(0, sd_case^2)

Fitted by maximum likelihood under the Laplace approximation (glmer's default, nAGQ = 1): for given
parameters the random effects' conditional mode is found by penalised IRLS (Newton), and
(beta0, sd_reader, sd_case) maximise the approximate likelihood. The intercept's standard error comes
from the numerical Hessian of the approximate deviance over all three, as glmer's vcov does.
Cross-checked against glmer in tests/reference_r (R script and its output).

The intercept is accuracy on the logit scale for a typical reader on a typical case (the random
effects at 0); it accounts for answers being clustered in readers and in cases, where a pooled
binomial test treats them as independent.
"""

import numpy as np
from scipy import optimize, special, stats

from .undefined import Undefined

MIN_ANSWERS = 10
MAX_SD = 10.0  # on the logit scale; an SD near this means a diverging fit (separation)
MAX_LOGIT = 15.0


def _mode(y, beta, sds, reader, case, n_readers, v):
    """Conditional mode of the spherical random effects v (u = sd * v) and the Laplace log-likelihood there.

    Newton's method on the penalised log-likelihood, halving a step that would lower it (a warm start
    from far-away parameters can otherwise overshoot).
    """
    n_cases = len(v) - n_readers

    def objective(v):
        eta = beta + sds[0] * v[reader] + sds[1] * v[n_readers + case]
        return np.sum(y * eta - np.logaddexp(0, eta)) - v @ v / 2, eta

    value, eta = objective(v)
    for _ in range(50):
        mu = special.expit(eta)
        residual = y - mu
        grad = -v + np.concatenate([sds[0] * np.bincount(reader, residual, n_readers),
                                    sds[1] * np.bincount(case, residual, n_cases)])
        step, _ = _solve(mu * (1 - mu), sds, reader, case, n_readers, n_cases, grad)
        for _ in range(30):
            new_value, new_eta = objective(v + step)
            if new_value >= value - 1e-12:
                break
            step = step / 2
        v, value, eta = v + step, new_value, new_eta
        if np.max(np.abs(step)) < 1e-10:
            break
    mu = special.expit(eta)
    _, logdet = _solve(mu * (1 - mu), sds, reader, case, n_readers, n_cases, None)
    return v, value - logdet / 2


def _solve(w, sds, reader, case, n_readers, n_cases, rhs):
    """Solve (Lambda Z'WZ Lambda + I) x = rhs (when given) and give its log-determinant.

    The reader block and the case block are each diagonal (an effect meets only itself), so the system
    reduces to the readers' Schur complement: O(readers^2 x cases), not (readers + cases)^3.
    """
    a = 1 + sds[0] ** 2 * np.bincount(reader, w, n_readers)
    c = 1 + sds[1] ** 2 * np.bincount(case, w, n_cases)
    cross = np.bincount(reader * n_cases + case, w, n_readers * n_cases).reshape(n_readers, n_cases)
    cross *= sds[0] * sds[1]
    schur = np.diag(a) - (cross / c) @ cross.T
    chol = np.linalg.cholesky(schur)
    logdet = np.sum(np.log(c)) + 2 * np.sum(np.log(np.diag(chol)))
    if rhs is None:
        return None, logdet
    x_r = np.linalg.solve(schur, rhs[:n_readers] - cross @ (rhs[n_readers:] / c))
    x_c = (rhs[n_readers:] - cross.T @ x_r) / c
    return np.concatenate([x_r, x_c]), logdet


def fit_crossed_logit(correct, readers, cases) -> dict | Undefined:
    """Fit the model to 0/1 outcomes with their reader and case labels.

    Returns {"intercept", "se", "var_reader", "var_case", "loglik", "n"} or Undefined where the
    model cannot be estimated (too few answers, or every answer right or every answer wrong).
    """
    y = np.asarray(correct, dtype=float)
    if len(y) < MIN_ANSWERS:
        return Undefined(f"fewer than {MIN_ANSWERS} answers")
    if y.min() == y.max():
        return Undefined("every answer is " + ("right" if y[0] else "wrong") + ": the log-odds are infinite")
    reader_names, reader = np.unique(np.asarray(readers), return_inverse=True)
    case_names, case = np.unique(np.asarray(cases), return_inverse=True)
    n_readers = len(reader_names)
    q = n_readers + len(case_names)
    state = {"v": np.zeros(q)}

    def deviance(params):
        beta, sd_r, sd_c = params
        v, value = _mode(y, beta, (abs(sd_r), abs(sd_c)), reader, case, n_readers, state["v"])
        state["v"] = v
        return -2 * value

    start = np.array([np.log(y.mean() / (1 - y.mean())), 0.5, 0.5])
    bounds = [(-MAX_LOGIT, MAX_LOGIT), (0, MAX_SD), (0, MAX_SD)]
    best = optimize.minimize(deviance, start, method="L-BFGS-B", bounds=bounds,
                             options={"ftol": 1e-12, "gtol": 1e-6, "eps": 1e-6, "maxfun": 400})
    if not best.success:  # a rough surface (near a boundary): the simplex copes where gradients do not
        best = optimize.minimize(deviance, best.x, method="Nelder-Mead", bounds=bounds,
                                 options={"xatol": 1e-8, "fatol": 1e-10, "maxfev": 1000})
    beta, sd_r, sd_c = best.x
    if not best.success:
        return Undefined("the model did not converge")
    if max(sd_r, sd_c) > 0.99 * MAX_SD or abs(beta) > 0.99 * MAX_LOGIT:
        return Undefined("the fit diverges: some readers or cases answer (or are answered) all alike, "
                         "so their effects have no finite estimate")
    # vcov as glmer computes it: the inverse of half the deviance's Hessian, over (sds, beta).
    hessian = _numeric_hessian(deviance, np.array([beta, sd_r, sd_c])) / 2
    try:
        covariance = np.linalg.inv(hessian)
    except np.linalg.LinAlgError:
        return Undefined("the likelihood is flat in the intercept")
    variance = covariance[0, 0]
    if not variance > 0:
        return Undefined("the intercept's variance cannot be estimated")
    return {"intercept": float(beta), "se": float(np.sqrt(variance)), "var_reader": float(sd_r ** 2),
            "var_case": float(sd_c ** 2), "loglik": float(-best.fun / 2), "n": int(len(y))}


def _numeric_hessian(f, x, step=1e-4):
    n = len(x)
    h = np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            def at(di, dj):
                z = x.copy()
                z[i] += di
                z[j] += dj
                return f(z)
            h[i, j] = h[j, i] = (at(step, step) - at(step, -step) - at(-step, step) + at(-step, -step)) / (4 * step ** 2)
    return h


def proportion_for_typical(fit: dict, confidence: float = 0.95) -> dict:
    """The fitted proportion for a typical reader and case, with a Wald interval on the logit scale and
    the Wald test of 0.5 (intercept 0)."""
    z = stats.norm.ppf(0.5 + confidence / 2)
    b, se = fit["intercept"], fit["se"]
    p_value = float(2 * stats.norm.sf(abs(b) / se))
    low, estimate, high = (float(v) for v in special.expit([b - z * se, b, b + z * se]))
    return {"estimate": estimate, "ci95": [low, high], "p_value_vs_null": p_value, **fit}
