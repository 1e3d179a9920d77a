"""Hyperparameter search and cross-validation: what a trial needs (pruning, K folds, threads) and
what a sweep writes at the end (the trials table, the best command line)."""
