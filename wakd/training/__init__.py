"""The training loop and the distillation objective behind ``wakd train`` / ``wakd distill`` (torch).

The commands' options live torch-free in :mod:`wakd.stages.train` and :mod:`wakd.stages.distill`."""
