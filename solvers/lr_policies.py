"""Caffe's learning-rate policies: the rate at iteration `it` (Caffe's GetLearningRate).

    fixed      base_lr
    step       base_lr * gamma ^ floor(it / stepsize)
    exp        base_lr * gamma ^ it
    inv        base_lr * (1 + gamma * it) ^ (-power)
    multistep  base_lr * gamma ^ (number of stepvalues <= it)
    poly       base_lr * (1 - it / max_iter) ^ power
    sigmoid    base_lr * 1 / (1 + exp(-gamma * (it - stepsize)))
"""
import difflib
import math

from unetcore.errors import SolverError


def learning_rate(p, it):
    policy = p.lr_policy
    if policy not in POLICIES:
        close = difflib.get_close_matches(policy, POLICIES, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise SolverError(f"unknown lr_policy '{policy}'; {hint}known: {', '.join(POLICIES)}")
    return POLICIES[policy](p, it)


def _needs(p, field, policy):
    if getattr(p, field) <= 0:
        raise SolverError(f"lr_policy '{policy}' needs {field} > 0")


def _step(p, it):
    _needs(p, "stepsize", "step")
    return p.base_lr * p.gamma ** (it // p.stepsize)


def _multistep(p, it):
    return p.base_lr * p.gamma ** sum(1 for v in p.stepvalue if it >= v)


def _poly(p, it):
    _needs(p, "max_iter", "poly")
    return p.base_lr * (1.0 - it / p.max_iter) ** p.power


POLICIES = {
    "fixed": lambda p, it: p.base_lr,
    "step": _step,
    "exp": lambda p, it: p.base_lr * p.gamma ** it,
    "inv": lambda p, it: p.base_lr * (1.0 + p.gamma * it) ** (-p.power),
    "multistep": _multistep,
    "poly": _poly,
    "sigmoid": lambda p, it: p.base_lr / (1.0 + math.exp(-p.gamma * (it - p.stepsize))),
}
