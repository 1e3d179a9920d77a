"""A Hydra sweeper on current Optuna (>= 4): `python -m runner.train -m hydra/sweeper=optuna4`."""
