"""The paper's optimizer: RAdam inside Lookahead, decoupled weight decay, one-cycle schedule.

Paper Section 3: Rectified Adam (Liu et al. 2019) wrapped in Lookahead (Zhang et al. 2019,
k = 6, alpha = 0.5), "true" (decoupled) weight decay 0.01 on every trainable layer except
BatchNorm (and, as in fastai, biases), and fastai's one-cycle policy (cosine annealing, warm-up
over the first 25% of steps, start at max_lr/25, end at max_lr/1e5, momentum 0.95 -> 0.85 ->
0.95). Only Lookahead is written here; RAdam and OneCycleLR are torch's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer, RAdam
from torch.optim.lr_scheduler import OneCycleLR

__all__ = ["Lookahead", "param_groups", "build_optimizer", "one_cycle"]


class Lookahead(Optimizer):
    """Lookahead around an inner ("fast") optimizer.

    Every ``k`` inner steps the slow weights move ``alpha`` of the way towards the fast
    weights, and the fast weights are reset to the slow ones::

        slow <- slow + alpha * (fast - slow);  fast <- slow

    Slow weights start equal to the parameters at construction. ``param_groups`` is the inner
    optimizer's list (the same dicts), so learning-rate schedulers act on the inner optimizer.
    ``state_dict`` holds the inner optimizer's state, the slow weights and the step count.
    """

    def __init__(self, optimizer: Optimizer, k: int = 6, alpha: float = 0.5):
        if k < 1:
            raise ValueError(f"Lookahead k must be >= 1, got {k}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"Lookahead alpha must be in (0, 1], got {alpha}")
        self.optimizer = optimizer
        self.k, self.alpha = int(k), float(alpha)
        super().__init__(optimizer.param_groups, optimizer.defaults)
        # Share the very same group dicts: a scheduler changing lr here changes the inner lr.
        self.param_groups = optimizer.param_groups
        self.lookahead_steps = 0
        self._slow = [
            [p.detach().clone() for p in group["params"]] for group in self.param_groups
        ]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One inner step; every ``k``-th call also the Lookahead interpolation."""
        with torch.enable_grad():
            loss = self.optimizer.step(closure)
        self.lookahead_steps += 1
        if self.lookahead_steps % self.k == 0:
            for group, slow_group in zip(self.param_groups, self._slow, strict=True):
                for p, slow in zip(group["params"], slow_group, strict=True):
                    slow.add_(p.detach() - slow, alpha=self.alpha)
                    p.copy_(slow)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return {
            "inner": self.optimizer.state_dict(),
            "slow": [[s.clone() for s in g] for g in self._slow],
            "lookahead_steps": self.lookahead_steps,
            "k": self.k,
            "alpha": self.alpha,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        for key in ("inner", "slow", "lookahead_steps"):
            if key not in state_dict:
                raise ValueError(f"Lookahead state_dict has no {key!r} entry")
        self.optimizer.load_state_dict(state_dict["inner"])
        # The inner optimizer may have replaced its group dicts: share them again.
        self.param_groups = self.optimizer.param_groups
        slow = state_dict["slow"]
        if [len(g) for g in slow] != [len(g) for g in self._slow]:
            raise ValueError("Lookahead state_dict does not match the parameter groups")
        for dst_group, src_group in zip(self._slow, slow, strict=True):
            for dst, src in zip(dst_group, src_group, strict=True):
                dst.copy_(src)
        self.lookahead_steps = int(state_dict["lookahead_steps"])


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split trainable parameters into ``[decay, no_decay]`` groups.

    No decay on BatchNorm (and other norm) weights and biases, on every bias, and on the
    scalar self-attention gain (every parameter with ``ndim <= 1``); ``weight_decay`` on the
    rest (conv and linear weights). Empty groups are dropped.
    """
    norm_types = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    no_decay_ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, norm_types):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (no_decay if id(p) in no_decay_ids or p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": float(weight_decay)},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(
    model: nn.Module | Iterable[dict[str, Any]],
    lr: float,
    weight_decay: float,
    k: int = 6,
    alpha: float = 0.5,
) -> Lookahead:
    """RAdam (decoupled weight decay, betas (0.9, 0.99) as fastai) inside Lookahead(k, alpha)."""
    groups = param_groups(model, weight_decay) if isinstance(model, nn.Module) else list(model)
    inner = RAdam(groups, lr=lr, betas=(0.9, 0.99), eps=1e-5, decoupled_weight_decay=True)
    return Lookahead(inner, k=k, alpha=alpha)


#: OneCycleLR needs distinct phase boundaries: at least this many steps.
MIN_CYCLE_STEPS = 8


def one_cycle(optimizer: Optimizer, max_lr: float, total_steps: int) -> OneCycleLR:
    """fastai's ``fit_one_cycle`` defaults on torch's OneCycleLR (step it once per batch).

    ``total_steps`` below :data:`MIN_CYCLE_STEPS` is raised to it (a tiny run then stops early
    in its cycle); read the scheduler's ``total_steps`` for the value used.
    """
    return OneCycleLR(
        optimizer,
        max_lr=max_lr,
        total_steps=max(MIN_CYCLE_STEPS, int(total_steps)),
        pct_start=0.25,
        anneal_strategy="cos",
        cycle_momentum=True,
        base_momentum=0.85,
        max_momentum=0.95,
        div_factor=25.0,
        final_div_factor=1e5 / 25.0,
    )
