from runner.train import run


def test_ae_runs_on_tiny_mnist(config, tiny_mnist, tmp_path):
    cfg = config("dataset=mnist", f"dataset.root={tiny_mnist}", "dataset.download=false")
    metrics = run(cfg)
    assert metrics["test/loss"] > 0
