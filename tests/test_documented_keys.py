"""Every key of the README's "keys most runs touch" table acts or is refused: a model or dataset
key that a family does not take stops the run at start-up instead of being ignored."""

import copy

import pytest
from omegaconf import open_dict

from runner.errors import RunnerError
from runner.validation import validate

FAMILIES = [
    "ae",
    "deep_ae",
    "sparse_ae",
    "denoising_ae",
    "vae",
    "beta_vae",
    "gan",
    "cnn",
    "mlp",
    "transfer",
]
# The table's per-family keys, with a valid value for a family that takes them.
MODEL_KEYS = {
    "latent_dim": 8,
    "init": "xavier",
    "noise_type": "masking",
    "noise_level": 0.2,
    "sparsity": "kl",
    "sparsity_weight": 0.01,
    "sparsity_target": 0.1,
}
DATASET_KEYS = {"root": "/data", "download": False}


@pytest.mark.parametrize("family", FAMILIES)
def test_model_keys_act_or_are_refused(config, family):
    base = config(f"model={family}", *(["optimizer=gan_adam"] if family == "gan" else []))
    validate(base)
    for key, value in MODEL_KEYS.items():
        cfg = copy.deepcopy(base)
        takes_it = key in cfg.model
        with open_dict(cfg):
            cfg.model[key] = value  # what `+model.<key>=<value>` on the command line adds
        if takes_it:
            validate(cfg)
        else:
            with pytest.raises(RunnerError, match=f"Unknown key model.{key}"):
                validate(cfg)


@pytest.mark.parametrize("dataset", ["digits", "mnist", "image_folder"])
def test_dataset_keys_act_or_are_refused(config, dataset):
    base = config(f"dataset={dataset}", *(["dataset.path=/x"] if dataset == "image_folder" else []))
    for key, value in DATASET_KEYS.items():
        cfg = copy.deepcopy(base)
        takes_it = key in cfg.dataset
        with open_dict(cfg):
            cfg.dataset[key] = value
        if takes_it:
            validate(cfg)
        else:
            with pytest.raises(RunnerError, match=f"Unknown key dataset.{key}"):
                validate(cfg)
    assert ("root" in base.dataset) == (dataset == "mnist")
