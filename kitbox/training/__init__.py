"""The shared trainer, knowing nothing of competitions, files of a run, or the pipeline: the :class:`Learner`
(fit, one-cycle, SGDR, lr_find, freeze / unfreeze, predict, TTA), its callbacks, the pure LR schedules, layer
groups and their LR scales, tasks (head activation, loss, decoding), devices and precision, DDP, batch sampling,
and progress (bars, history, plots). ``tests/test_layers.py`` checks that nothing here imports
:mod:`kitbox.adapt` or :mod:`kitbox.pipeline`."""
