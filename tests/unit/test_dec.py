import torch

from stream_dec.model import DEC, ModelVersion
from stream_dec.model.assignment import soft_assignment


def test_spherical_geometry_normalises_codes_and_scales_distances():
    torch.manual_seed(0)
    model = DEC((6, 4, 3), n_clusters=2, alpha=50.0, latent_radius=7.0)
    with torch.no_grad():
        model.centres.copy_(torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, -3.0]]))
    x = torch.randn(5, 6)
    z = model.encode(x)
    assert torch.allclose(z.norm(dim=1), torch.ones(5))
    assert torch.allclose(model.cluster_centres().norm(dim=1), torch.ones(2))
    expected = soft_assignment(7.0 * z, 7.0 * model.cluster_centres(), alpha=50.0)
    assert torch.allclose(model(x), expected)


def test_radius_zero_is_the_papers_geometry():
    torch.manual_seed(0)
    model = DEC((6, 3), n_clusters=2, alpha=1.0)
    x = torch.randn(4, 6)
    assert torch.allclose(model.encode(x), model.autoencoder.encode(x))
    assert torch.allclose(model(x), soft_assignment(model.autoencoder.encode(x), model.centres, 1.0))


def test_checkpoint_keeps_the_geometry(tmp_path):
    model = DEC((6, 3), n_clusters=2, alpha=50.0, latent_radius=7.0)
    ModelVersion.from_model(model, version=1).save(tmp_path)
    loaded = ModelVersion.load(tmp_path).to_model()
    assert (loaded.alpha, loaded.latent_radius) == (50.0, 7.0)
    x = torch.randn(3, 6)
    assert torch.equal(loaded(x), model.eval()(x))


def test_predict_validates_its_input():
    import numpy as np
    import pytest

    model = DEC(dims=(4, 3, 2), n_clusters=3)
    X = np.random.default_rng(0).normal(size=(5, 4))
    assert np.array_equal(model.predict(X)[0], model.predict(X.astype(np.float32))[0])  # float64 accepted
    assert np.array_equal(model.predict(X.astype(np.int64))[0], model.predict(X.astype(np.int64).astype("f4"))[0])
    for bad, message in ((X[:, :3], "rows of 4 values"), (X[0], r"shape \(4,\)"), (np.full((2, 4), np.nan), "NaN"),
                         (X.astype(bool), "real numbers")):
        with pytest.raises(ValueError, match=message):
            model.predict(bad)


def test_the_clusterer_fits_predicts_repeats_and_leaves_global_state_alone(wordnet_small):
    import numpy as np
    import pytest

    from stream_dec.model.estimator import DECClusterer
    from stream_dec.model.metrics import cluster_accuracy

    X, y = wordnet_small
    params = {"hidden_dims": (64,), "latent_dim": 10, "pretrain_epochs": 15, "max_epochs": 3, "n_init": 3,
              "batch_size": 64, "device": "cpu"}
    before = torch.random.get_rng_state()
    first = DECClusterer(6, random_state=3, **params).fit(X.astype(np.float64))  # float64 taken as float32
    assert torch.equal(torch.random.get_rng_state(), before)
    assert np.array_equal(DECClusterer(6, random_state=3, **params).fit_predict(X), first.labels_)
    assert cluster_accuracy(y, first.labels_) > 0.45 and first.cluster_centers_.shape == (6, 10)
    with pytest.raises(ValueError, match="rows of 384 values"):
        first.predict(X[:, :10])
    with pytest.raises(ValueError, match="finite real 2-D"):
        DECClusterer(6, **params).fit(np.full((10, 4), np.nan))
    with pytest.raises(ValueError, match="lr"):
        DECClusterer(6, lr=-1.0)
