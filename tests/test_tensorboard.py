"""What a user sees in TensorBoard, read back with TensorBoard's own event reader."""

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import plugin_data_pb2

from runner.train import run


def _events(run_dir):
    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_event_file_holds_scalars_images_and_hparams(config, tmp_path):
    metrics = run(config("model=deep_ae", "trainer.max_epochs=2", "optimizer.lr=0.002"))
    acc = _events(tmp_path / "run")
    scalars = acc.Tags()["scalars"]
    for tag in (
        "train/loss",
        "val/loss",
        "val/recon_mse",
        "train/lr",
        "test/loss",
        "val/loss_best",
    ):
        assert tag in scalars, tag
    assert [e.step for e in acc.Scalars("val/loss")] == [0, 1]
    assert abs(acc.Scalars("train/lr")[0].value - 0.002) < 1e-9

    images = acc.Images("val/reconstructions")
    assert len(images) == 2  # one grid per epoch
    assert images[0].width > images[0].height  # inputs and reconstructions side by side

    # HParams tab: the run's choices and knobs, with its final metrics.
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["model"].string_value == "deep_ae"
    assert hparams["optimizer.lr"].number_value == 0.002
    assert hparams["dataset"].string_value == "digits"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metric_tags = {m.name.tag for m in experiment.experiment.metric_infos}
    assert {"test/loss", "val/loss_best"} <= metric_tags
    assert abs(acc.Scalars("test/loss")[-1].value - metrics["test/loss"]) < 1e-6


def test_denoising_model_shows_noisy_denoised_and_clean(config, tmp_path):
    run(config("model=denoising_ae", "trainer.max_epochs=1"))
    image = _events(tmp_path / "run").Images("val/denoising")[0]
    assert image.width > 2.5 * image.height  # three images side by side per example row


def test_no_tensorboard_when_the_logger_is_off(config, tmp_path):
    run(config("logger=none", "trainer.max_epochs=1"))
    assert not list((tmp_path / "run").glob("events.out.tfevents.*"))
    assert (tmp_path / "run" / "metrics.json").exists()


def test_custom_scalars_pair_train_and_val_and_hparams_lead_with_the_overrides(config, tmp_path):
    run(config("model=cnn", "model.channels=[8]", "optimizer.lr=0.003", "model.hidden_dim=16"))
    acc = _events(tmp_path / "run")
    layouts = [
        layout_pb2.Layout.FromString(
            acc.Tensors("custom_scalars__config__")[i].tensor_proto.string_val[0]
        )
        for i in range(len(acc.Tensors("custom_scalars__config__")))
    ]
    final = layouts[-1]  # written again after the test pass, with the per-class section
    titles = ["metrics: train and val", "test: one value per run", "per class"]
    assert [c.title for c in final.category] == titles
    charts = {chart.title: list(chart.multiline.tag) for chart in final.category[0].chart}
    assert charts["loss"] == ["train/loss", "val/loss", "test/loss"]
    assert charts["acc"] == ["train/acc", "val/acc", "test/acc"]
    test_only = [tag for chart in final.category[1].chart for tag in chart.multiline.tag]
    assert "test/majority_acc" in test_only  # the baseline the classifier had to beat
    per_class = final.category[2].chart[0]
    assert per_class.title == "test/acc_class" and per_class.multiline.tag == ["^test/acc_class/.*"]
    assert "test/acc_class/3" in acc.Tags()["scalars"]  # the chart's curves exist

    content = acc.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    columns = [h.name for h in experiment.experiment.hparam_infos]
    overridden = ["trainer.device", "trainer.progress_bar", "trainer.max_epochs"]  # conftest's
    chosen = ["model", "model.channels", "optimizer.lr", "model.hidden_dim"]  # this test's
    assert columns[:7] == [*overridden, *chosen]
    assert columns.index("dataset.num_classes") > 7  # unchanged values come after
    metric_tags = {m.name.tag for m in experiment.experiment.metric_infos}
    assert "test/acc" in metric_tags and not any("acc_class" in t for t in metric_tags)
