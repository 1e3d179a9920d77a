"""The shape of the code: model files import no application code, the package's imports form no
cycle, capabilities are declared once, the augmentation keys are listed once."""

import ast
import inspect
from pathlib import Path

import pytest
import torch

from runner.config import AugmentationConfig, augmentation_keys
from runner.data.augment import BatchAugmentation
from runner.data.sequence_augment import SequenceAugmentation
from runner.models import (
    CNN,
    GAN,
    MLP,
    VAE,
    Autoencoder,
    DenoisingAutoencoder,
    SeqAutoencoder,
    SeqClassifier,
    SparseAutoencoder,
)
from runner.models.capabilities import Classifier, ConvMaps, Decoder, Encoder, Sampler

RUNNER = Path(__file__).resolve().parents[1] / "runner"
# What a model file must not reach up into: the entrypoints, runs, sample scoring.
APPLICATION = (
    "runner.metrics",
    "runner.runs",
    "runner.entry",
    "runner.train",
    "runner.eval",
    "runner.sample",
    "runner.predict",
    "runner.evaluate_samples",
    "runner.compare",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(RUNNER.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module an import statement names, at module or function level (relative ones
    resolved), with `from x import y` also as `x.y` (y may be a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_model_files_import_no_application_code():
    reaching_up = {
        f"{path.relative_to(RUNNER.parent)} imports {name}"
        for path in (RUNNER / "models").rglob("*.py")
        for name in imported(path)
        if any(name == app or name.startswith(app + ".") for app in APPLICATION)
    }
    assert not reaching_up


def import_graph() -> dict[str, set[str]]:
    """runner's modules -> the runner modules importing them executes: the named module and
    the packages above it, except the importer's own (already initialising)."""
    modules = {module_name(p): p for p in RUNNER.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for target in imported(path):
            while target and target not in modules:  # `from pkg.mod import function`
                target = target.rpartition(".")[0]
            while target:
                if target != name and not name.startswith(target + "."):
                    edges.add(target)
                target = target.rpartition(".")[0]
        graph[name] = {t for t in edges if t in modules}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}  # "open" while on the path, "done" after

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [node, nxt] if nxt in path else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [node])):
                return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node, [])):
            return cycle
    return None


def test_the_package_imports_form_no_cycle():
    assert find_cycle(import_graph()) is None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()})
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# -- capabilities -----------------------------------------------------------------------------

SHAPE = (1, 12, 12)


@pytest.mark.parametrize(
    ("model", "capabilities"),
    [
        (lambda: VAE(SHAPE, latent_dim=4), {Encoder, Decoder, Sampler, ConvMaps}),
        (lambda: GAN(SHAPE, latent_dim=4, channels=(8, 16)), {Decoder, Sampler}),
        (lambda: Autoencoder(SHAPE, latent_dim=4), {Encoder, Decoder, ConvMaps}),
        (lambda: SparseAutoencoder(SHAPE, latent_dim=4), {Encoder, Decoder, ConvMaps}),
        (lambda: DenoisingAutoencoder(SHAPE, latent_dim=4), {Encoder, Decoder, ConvMaps}),
        (lambda: SeqAutoencoder((10, 2), latent_dim=3, hidden_size=8), {Encoder}),
        (lambda: CNN(SHAPE, 3, channels=(8,), hidden_dim=8), {Classifier, ConvMaps}),
        (lambda: MLP(SHAPE, 3, hidden_dims=(8,)), {Classifier}),
        (lambda: SeqClassifier((10, 2), 3, hidden_size=8), {Classifier}),
    ],
)
def test_each_family_has_the_capabilities_it_declares(model, capabilities):
    built = model()
    has = {c for c in (Encoder, Decoder, Sampler, Classifier, ConvMaps) if isinstance(built, c)}
    assert has == capabilities


def test_a_classifier_classifies_its_features():
    model = CNN(SHAPE, 3, channels=(8,), hidden_dim=8).eval()
    x = torch.rand(2, *SHAPE)
    torch.testing.assert_close(model.classify(model.features(x)), model(x))


# -- augmentation keys --------------------------------------------------------------------------


def test_the_augmentation_keys_are_the_config_fields_and_the_transforms_arguments():
    images, series = augmentation_keys("images"), augmentation_keys("series")
    assert set(images) | set(series) == set(AugmentationConfig.__dataclass_fields__)
    assert not set(images) & set(series)
    for transform, keys in ((BatchAugmentation, images), (SequenceAugmentation, series)):
        params = inspect.signature(transform).parameters
        assert {k: params[k].default for k in keys} == keys  # same names, same "off"
    assert not BatchAugmentation(**images).enabled
    assert not SequenceAugmentation(**series).enabled
