"""The GAN: every loss builds and steps on every data shape; it learns; divergence is reported."""

import functools

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.nn.utils import parametrize

from runner.errors import RunnerError, TrainingDiverged
from runner.models import GAN
from runner.models.gan import ema_with_warm_up
from runner.train import run
from runner.training.step import OptimizerStep


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("loss", ["bce", "minimax", "hinge", "wgan_gp"])
def test_every_loss_steps_both_networks_on_every_shape(shape, loss, tmp_path):
    torch.manual_seed(0)
    # Two time-scales: the discriminator's own learning rate, the rest from the one partial.
    model = GAN(shape, latent_dim=8, channels=(8, 16), loss=loss, n_critic=2, discriminator_lr=1e-4)
    make = functools.partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999))
    optimizers = model.configure_optimizers(make)
    assert optimizers["d"].param_groups[0]["lr"] == 1e-4
    assert optimizers["g"].param_groups[0]["lr"] == 2e-4
    assert optimizers["d"].param_groups[0]["betas"] == (0.5, 0.999)
    g_before = [p.clone() for p in model.generator.parameters()]
    d_before = [p.clone() for p in model.discriminator.parameters()]
    model.train()
    out = model.training_step(
        (torch.rand(6, *shape), None), optimizers, OptimizerStep(torch.device("cpu"))
    )
    assert all(torch.isfinite(v) for v in out.values())
    assert any(not torch.equal(a, b) for a, b in zip(g_before, model.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d_before, model.discriminator.parameters()))
    model.eval()
    assert torch.isfinite(model.validation_step((torch.rand(6, *shape), None))["d_loss"])
    torch.save(model.state_dict(), tmp_path / "gan.pt")
    again = GAN(shape, latent_dim=8, channels=(8, 16), loss=loss)
    again.load_state_dict(torch.load(tmp_path / "gan.pt", weights_only=True))
    again.eval()
    assert torch.equal(again.generate(model.fixed_noise), model.generate(model.fixed_noise))
    samples = model.sample(4)
    assert samples.shape == (4, *shape) and samples.min() >= 0 and samples.max() <= 1


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_resize_generator_of_its_own_widths_spectral_norm_batch_spread_and_averaging(
    shape, tmp_path
):
    torch.manual_seed(0)
    options = dict(
        upsample="resize",
        spectral_norm=True,
        minibatch_std=True,
        ema_decay=0.9,
        loss="hinge",
        generator_channels=(4, 8, 16),
    )
    model = GAN(shape, latent_dim=8, channels=(8, 16), **options)
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in model.generator.modules())
    # a generator three levels deep beside a two-level discriminator
    assert sum(isinstance(m, torch.nn.Upsample) for m in model.generator.modules()) == 3
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.discriminator.modules()) == 2
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.discriminator.modules())
    assert all(
        parametrize.is_parametrized(m, "weight")
        for m in model.discriminator.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    )
    optimizers = model.configure_optimizers(functools.partial(torch.optim.Adam, lr=1e-2))
    model.train()
    for _ in range(3):
        model.training_step(
            (torch.rand(6, *shape), None), optimizers, OptimizerStep(torch.device("cpu"))
        )
    model.eval()
    z = model.fixed_noise[:4]
    averaged = model.generator_ema(z)
    # The average lags the trained weights, and it is what samples are drawn from.
    assert not torch.allclose(averaged, model.generate(z))
    assert torch.equal(model.draw(z), (averaged + 1) / 2)
    torch.save(model.state_dict(), tmp_path / "gan.pt")
    again = GAN(shape, latent_dim=8, channels=(8, 16), **options).eval()
    again.load_state_dict(torch.load(tmp_path / "gan.pt", weights_only=True))
    assert torch.equal(again.draw(z), model.draw(z))
    assert model.sample(5).shape == (5, *shape)


def test_monitoring_val_fd_without_a_classifier_is_refused_at_start_up(config):
    with pytest.raises(RunnerError, match="model.fd_classifier"):
        run(config("model=gan", "model.fd_classifier=null", "optimized_metric=val/fd"))


def test_gan_trains_on_digits_and_shows_fixed_noise_samples(config, tmp_path):
    run(
        config(
            "model=gan",
            "model.fd_classifier=null",
            "optimizer=gan_adam",
            "optimized_metric=val/g_loss",
            "model.loss=bce",  # the original DCGAN: D's outputs are probabilities
            "model.spectral_norm=false",
            "model.channels=[8,16]",
            "model.latent_dim=16",
            "trainer.max_epochs=3",
            "trainer.batch_size=32",
            "trainer.limit_train_batches=15",
            "logger.num_images=16",
            "logger.log_hparams=false",
        )
    )
    acc = EventAccumulator(str(tmp_path / "run"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    assert len(acc.Images("val/samples")) == 3
    for tag in (
        "train/d_loss",
        "train/g_loss",
        "train/d_real",
        "train/d_fake",
        "train/lr_g",
        "train/lr_d",
    ):
        assert tag in acc.Tags()["scalars"], tag
    d_real = [e.value for e in acc.Scalars("train/d_real")]
    d_fake = [e.value for e in acc.Scalars("train/d_fake")]
    assert all(r > f for r, f in zip(d_real, d_fake))  # D tells real from fake, G keeps it busy
    assert all(0.05 < f < 0.95 for f in d_fake)


def test_a_discriminator_pinned_at_zero_loss_stops_the_run_with_advice():
    model = GAN((1, 8, 8), latent_dim=4, channels=(4, 8), collapse_patience=2)
    model.on_train_epoch_end({"train/d_loss": 1e-5})
    model.on_train_epoch_end({"train/d_loss": 0.5})  # recovered: the count starts again
    model.on_train_epoch_end({"train/d_loss": 1e-5})
    with pytest.raises(TrainingDiverged, match="label_smoothing"):
        model.on_train_epoch_end({"train/d_loss": 2e-5})


def test_weight_average_warms_up_then_holds_its_decay():
    net = torch.nn.Linear(1, 1, bias=False)
    averaged = torch.optim.swa_utils.AveragedModel(net, multi_avg_fn=ema_with_warm_up(0.9))
    expected = None
    for n, value in enumerate([4.0, 0.0, 8.0, 2.0] + [10.0] * 200):
        net.weight.data.fill_(value)
        averaged.update_parameters(net)
        # the first update copies; then the decay is (1 + n) / (10 + n), capped at 0.9
        decay = min(0.9, (1 + n) / (10 + n))
        expected = value if n == 0 else decay * expected + (1 - decay) * value
        assert averaged.module.weight.item() == pytest.approx(expected)
        if n == 1:  # a plain average of decay 0.9 would still sit at 3.6, near the start
            assert averaged.module.weight.item() < 1.0


@pytest.mark.parametrize(("loss", "n_critic"), [("hinge", 1), ("wgan_gp", 3)])
def test_one_generator_pass_per_critic_step(loss, n_critic):
    torch.manual_seed(0)
    model = GAN((1, 8, 8), latent_dim=4, channels=(4, 8), loss=loss, n_critic=n_critic)
    calls = []
    model.generator.register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled()))
    optimizers = model.configure_optimizers(functools.partial(torch.optim.Adam, lr=1e-3))
    model.train()
    model.training_step(
        (torch.rand(6, 1, 8, 8), None), optimizers, OptimizerStep(torch.device("cpu"))
    )
    # fakes for the critic steps are drawn without a graph, except the last, which the generator
    # step reuses
    assert calls == [False] * (n_critic - 1) + [True]
