"""The test suite, a package so that its helpers import by one name everywhere: `tests.fakes`
(tiny data and quick configs) in pytest and its xdist workers, `tests.ddp_faults` in the processes
the DDP tests start (tests/conftest.py puts this checkout first on their PYTHONPATH)."""
