"""`runner.sample` and `runner.predict`: pictures and predictions from a finished run's folder."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from runner.build import build_data
from runner.entry_config import PredictOptions, SampleOptions
from runner.runs import load_run
from runner.train import run

QUIET = ("trainer.progress_bar=false", "trainer.device=cpu")


def call(tmp_path, module: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", module, *QUIET, *args]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_predict_writes_one_row_per_image_that_agrees_with_the_model(
    tmp_path, config, cnn_run, session_mnist
):
    cfg = config(*session_mnist)
    test = build_data(cfg).test
    images, labels = test.images[:40], test.labels[:40]
    folder = tmp_path / "mine"
    folder.mkdir()
    for k, image in enumerate(images):  # PNG files, as a user would have them
        Image.fromarray(image[0].numpy()).save(folder / f"digit_{k:02d}.png")
    proc = call(
        tmp_path,
        "runner.predict",
        f"ckpt_path={cnn_run}",
        f"input={folder}",
        "top_k=2",
        "hydra.run.dir=out",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "out" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"].rsplit("/", 1)[-1] for r in rows] == [f"digit_{k:02d}.png" for k in range(40)]
    model = load_run(cnn_run).model
    with torch.no_grad():
        expected = model(images.float() / 255).argmax(dim=1)
    names = model.class_names  # MNIST's, as torchvision names them: "0 - zero", ...
    assert [r["predicted"] for r in rows] == [names[k] for k in expected.tolist()]
    accuracy = np.mean([r["predicted"] == names[int(y)] for r, y in zip(rows, labels)])
    assert accuracy == pytest.approx((expected == labels).float().mean().item())
    assert accuracy > 0.5, accuracy  # the 4-epoch cnn has learned the digits
    confidence = np.mean([float(r["probability"]) for r in rows])
    assert confidence > 2 / len(names), confidence  # twice chance's 1/10 on the run's own data
    assert all(float(r["probability"]) >= float(r["top2"].split(":")[1]) for r in rows)
    grid = Image.open(tmp_path / "out" / "predictions.png")
    assert grid.size[0] > 8 * 8  # eight captioned tiles per row


@pytest.mark.slow
def test_sample_draws_the_same_pictures_for_the_same_seed(tmp_path, config):
    vae = tmp_path / "vae"
    run(
        config(
            "model=vae",
            "model.fd_classifier=null",
            "model.channels=[8]",
            "model.hidden_dims=[32]",
            "trainer.max_epochs=1",
            run_dir=vae,
        )
    )
    for out in ("a", "b"):
        proc = call(
            tmp_path,
            "runner.sample",
            f"ckpt_path={vae}",
            "n=6",
            "seed=3",
            "steps=5",
            f"hydra.run.dir={out}",
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = tmp_path / "a", tmp_path / "b"
    assert sorted(p.name for p in (a / "samples").iterdir()) == [f"{k:04d}.png" for k in range(6)]
    for name in ("samples.png", "interpolation.png", "reconstructions.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    sample = Image.open(a / "samples" / "0000.png")
    assert sample.size == (8, 8)  # the digits' shape
    walk = Image.open(a / "interpolation.png")
    assert walk.size == (5 * 9 + 1, 6 * 9 + 1)  # 6 rows of 5 steps, 8x8 tiles, 1 px padding
    assert len(list((a / "reconstructions").glob("test_*.png"))) == 6
    assert Image.open(a / "reconstructions" / "test_0000.png").size == (16, 8)  # input | output


def test_the_wrong_family_or_input_is_refused_with_exit_code_2(tmp_path, cnn_run):
    proc = call(tmp_path, "runner.sample", f"ckpt_path={cnn_run}", "hydra.run.dir=s")
    assert proc.returncode == 2 and "cannot draw images" in proc.stderr
    assert not (tmp_path / "s").exists()  # refused before Hydra made a folder
    (tmp_path / "empty").mkdir()
    proc = call(
        tmp_path,
        "runner.predict",
        f"ckpt_path={cnn_run}",
        f"input={tmp_path / 'empty'}",
        "hydra.run.dir=p",
    )
    assert proc.returncode == 2 and "holds no images" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "p").exists()


def test_a_gan_samples_without_reconstructions_and_a_transfer_run_predicts(
    tmp_path, config, cnn_run
):
    from runner.predict import write_predictions
    from runner.sample import draw_pictures

    gan = tmp_path / "gan"
    gan_cfg = (
        "model=gan",
        "model.fd_classifier=null",
        "model.channels=[8,16]",
        "model.latent_dim=8",
    )
    run(config(*gan_cfg, "optimized_metric=val/g_loss", "trainer.max_epochs=1", run_dir=gan))
    options = SampleOptions(n=5, seed=1, steps=4)
    saved = load_run(gan)
    written = draw_pictures(saved, saved.config, tmp_path / "gan_out", options)
    assert written == 1 + 5 + 1  # the grid, five samples, the interpolation
    assert not (tmp_path / "gan_out" / "reconstructions").exists()  # a GAN has no encoder

    transfer = tmp_path / "transfer"
    run(
        config(
            "model=transfer",
            f"model.pretrained={cnn_run}",
            "trainer.max_epochs=1",
            run_dir=transfer,
        )
    )
    folder = tmp_path / "few"
    folder.mkdir()
    for k, image in enumerate(build_data(config()).test.images[:6]):
        Image.fromarray(image[0].numpy()).save(folder / f"{k}.png")
    tuned = load_run(transfer)
    options = PredictOptions(input=str(folder), top_k=3, grid=False)
    confidence = write_predictions(tuned, tuned.config, tmp_path / "pred", options)
    with open(tmp_path / "pred" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {"top1", "top2", "top3"} <= set(rows[0])
    # The returned confidence is the mean probability of the predicted classes, as written.
    assert confidence == pytest.approx(np.mean([float(r["probability"]) for r in rows]), abs=1e-5)
    assert not (tmp_path / "pred" / "predictions.png").exists()
