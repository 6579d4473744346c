"""torch's own schedulers, set up to match kitbox's schedules: the references their values are tested against."""
import numpy as np
import torch


def torch_one_cycle(n_steps, lr, pct_start, div, div_final, moms):
    """(lr, beta1) per step from torch's OneCycleLR set up to match ``one_cycle_lr`` sampled at t = i / n_steps.

    Ours is a function of the fraction of the fit done, sampled at each batch's start (0, 1/n, ..., (n-1)/n) and
    reaching lr_max at t = pct_start and the final LR at t = 1, one step past the last batch. torch reaches max_lr
    at step ``pct_start * total_steps - 1`` and its final LR at step ``total_steps - 1``. So: total_steps = n + 1,
    pct_start = (pct_start * n + 1) / (n + 1); div_factor = div; final_div_factor is relative to the initial LR
    (max_lr / div), hence div_final / div; momentum runs max -> base -> max, so moms = (max, base, max).
    """
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=lr, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=n_steps + 1, pct_start=(pct_start * n_steps + 1) / (n_steps + 1),
        anneal_strategy="cos", div_factor=div, final_div_factor=div_final / div, three_phase=False,
        cycle_momentum=True, base_momentum=moms[1], max_momentum=moms[0])
    values = []
    for _ in range(n_steps):
        values.append((opt.param_groups[0]["lr"], opt.param_groups[0]["betas"][0]))
        opt.step()
        sched.step()
    return np.array(values)


def torch_sgdr(n_batches, cycle_len, cycle_mult, lr, lr_min, n_steps):
    """LR per step from torch's CosineAnnealingWarmRestarts stepped once per batch: T_0 is the first cycle in batches."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=cycle_len * n_batches, T_mult=cycle_mult,
                                                                 eta_min=lr_min)
    values = []
    for _ in range(n_steps):
        values.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(values)
