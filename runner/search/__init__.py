"""What a run needs when it is part of a search: the Optuna trial side (report each epoch, stop
when pruned, the HParams row of a stopped trial), K-fold cross-validation, and threads and GPUs
for trials side by side. The sweeper itself is hydra_plugins/optuna4_sweeper/."""
