"""A Hydra sweeper on current Optuna (>= 4): `python -m runner.train -m hydra/sweeper=optuna4`.

Self-contained: it imports nothing of the app. `config.py` (the sweeper's schema, the sampler and
pruner presets) and `sweeper.py` (the plugin class) are what Hydra's plugin scan imports at every
start; the modules whose names begin with `_` (the sweep, its search space, study, report and
pictures) load only when a sweep starts, and Optuna with them.
"""
