import numpy as np
import pytest
import torch

from stream_dec.model import DEC, ModelVersion
from stream_dec.model.predictor import Predictor
from tests.conftest import wordnet_slice


def spread(dims: tuple[int, ...], X: np.ndarray, clusters: int, latent_radius: float) -> ModelVersion:
    """A model whose centres sit at the codes of ``clusters`` real rows, so labels vary."""
    torch.manual_seed(0)
    model = DEC(dims, clusters, latent_radius=latent_radius)
    rows = np.random.default_rng(0).choice(len(X), clusters, replace=False)
    with torch.no_grad():
        model.centres.copy_(model.autoencoder.encode(torch.from_numpy(X[rows])))
    return ModelVersion.from_model(model, version=1)


CASES = ["text, cosine, linear", "text, euclidean, linear", "images, euclidean, deep"]


def real_case(case: str, request) -> tuple[np.ndarray, ModelVersion]:
    """Real rows and a model spread over them: wordnet with a linear encoder, or MNIST with a deep one."""
    if case.startswith("text"):
        X, _ = wordnet_slice(classes=24, per_class=50)
        dims = (384, 384)
    else:
        X, _ = request.getfixturevalue("mnist_small")
        dims = (784, 64, 10)
    return X, spread(dims, X, clusters=24, latent_radius=7.0 if "cosine" in case else 0.0)


@pytest.mark.parametrize("case", CASES)
def test_bfloat16_precision_keeps_float32_labels_and_confidence_to_1e3(case, request):
    X, version = real_case(case, request)
    exact, fast = Predictor(version, "cpu", "float32"), Predictor(version, "cpu", "bfloat16")
    assert (exact.precision, fast.precision) == ("float32", "bfloat16")
    labels, confidence = exact.predict(X)
    fast_labels, fast_confidence = fast.predict(X)
    assert len(np.unique(labels)) >= 12  # labels vary: equality below means something
    np.testing.assert_array_equal(fast_labels, labels)
    assert fast_confidence.dtype == np.float32
    np.testing.assert_allclose(fast_confidence, confidence, rtol=0, atol=1e-3)
    assert not np.array_equal(fast_confidence, confidence)  # the bfloat16 product is in use


def test_auto_precision_folds_only_where_the_cpu_multiplies_in_bfloat16(monkeypatch):
    version = spread((384, 16), wordnet_slice(classes=4, per_class=5)[0], clusters=4, latent_radius=7.0)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    for native, expected in ((False, "float32"), (True, "bfloat16")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
        assert Predictor(version, "cpu", "auto").precision == expected
    assert Predictor(version, "cpu", "float32").precision == "float32"


@pytest.mark.parametrize("case", CASES)
def test_float32_head_gives_the_models_labels_and_confidence(case, request):
    X, version = real_case(case, request)
    predictor = Predictor(version, "cpu", "float32")
    confidence, labels = version.to_model().soft_assign(X).max(dim=1)  # the network as DEC defines it
    head_labels, head_confidence = predictor.predict(X)
    assert len(np.unique(head_labels)) >= 12  # labels vary: equality below means something
    np.testing.assert_array_equal(head_labels, labels.numpy())
    assert head_confidence.dtype == np.float32
    np.testing.assert_allclose(head_confidence, confidence.numpy(), rtol=0, atol=1e-5)
    assert confidence.min() < 0.5  # not all near 1: the confidence check means something
