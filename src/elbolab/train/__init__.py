"""Training: the loop, checkpoints, EMA, mixed precision, distributed runs (torchrun) and staged training."""
