"""The one exception type for mistakes a user can fix (bad config, missing files, divergence)."""


class RunnerError(Exception):
    """A problem the user can act on; `runner.train` prints it as one paragraph and exits 2."""


class TrainingDiverged(RunnerError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
