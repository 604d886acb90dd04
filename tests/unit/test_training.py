import dataclasses

import numpy as np
import torch

from stream_dec.config import ModelConfig, TrainConfig
from stream_dec.model.dec import resolve_precision
from stream_dec.model.metrics import cluster_accuracy
from stream_dec.model.training import fit_dec, new_model, pretrain_autoencoder, pretrain_layerwise

FAST = TrainConfig(pretrain_epochs=15, max_epochs=3, n_init=3, batch_size=64, device="cpu")
SMALL = ModelConfig(hidden_dims=(64,), latent_dim=10)


def test_training_is_reproducible_under_a_seed(wordnet_small):
    X, _ = wordnet_small
    first, _ = fit_dec(X, SMALL, FAST, n_clusters=6)
    second, _ = fit_dec(X, SMALL, FAST, n_clusters=6)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    other, _ = fit_dec(X, SMALL, dataclasses.replace(FAST, seed=1), n_clusters=6)
    assert not torch.equal(first.centres, other.centres)


def test_dec_clusters_real_embeddings_well_above_chance(wordnet_small):
    X, y = wordnet_small
    model, report = fit_dec(X, SMALL, FAST, n_clusters=6)
    labels, confidence = model.predict(X)
    assert cluster_accuracy(y, labels) > 0.45  # chance is 1/6; measured 0.56
    assert report.self_train.iterations > 0 and np.all((confidence > 0) & (confidence <= 1))


def test_self_training_stops_on_tol(wordnet_small):
    """It stops at the first target update whose label change falls below tol, and not before:
    with tol 0 the same run goes on to max_epochs."""
    X, _ = wordnet_small
    config = dataclasses.replace(FAST, tol=0.01, update_interval=5, max_epochs=50, lr=1e-3)
    _, report = fit_dec(X, SMALL, config, n_clusters=6)
    assert report.self_train.converged and report.self_train.label_change < 0.01
    assert 0 < report.self_train.epochs < 50 and report.self_train.iterations % 5 == 0
    _, endless = fit_dec(X, SMALL, dataclasses.replace(config, tol=0.0), n_clusters=6)
    assert not endless.self_train.converged and endless.self_train.epochs == 50


def test_the_target_is_fixed_between_update_intervals(wordnet_small, monkeypatch):
    """P is recomputed over the whole window once every update_interval steps (the paper), never per batch."""
    from stream_dec.model import training

    X, _ = wordnet_small
    calls = []
    original = training._target_and_labels
    monkeypatch.setattr(training, "_target_and_labels", lambda model, data: calls.append(len(data)) or original(model, data))
    _, report = fit_dec(X, SMALL, dataclasses.replace(FAST, tol=0.0, update_interval=7, max_epochs=3), n_clusters=6)
    steps = report.self_train.iterations
    assert steps == 30 and calls == [len(X)] * -(-steps // 7)  # at steps 0, 7, 14, 21, 28


def test_epochs_reported_never_exceed_max_epochs(wordnet_small):
    """600 rows in batches of 64 is 10 steps a pass (the last one short): the report said 3.2 for 3."""
    X, _ = wordnet_small
    assert len(X) % FAST.batch_size  # a short last batch
    _, report = fit_dec(X, SMALL, dataclasses.replace(FAST, tol=0.0), n_clusters=6)
    assert not report.self_train.converged and report.self_train.epochs == FAST.max_epochs


def test_training_leaves_torchs_global_random_state_alone(wordnet_small):
    X, _ = wordnet_small
    before = torch.random.get_rng_state()
    fit_dec(X, SMALL, dataclasses.replace(FAST, max_epochs=1), n_clusters=6)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_a_pretrained_autoencoder_is_reused_as_it_was(wordnet_small):
    X, _ = wordnet_small
    _, first = fit_dec(X, SMALL, dataclasses.replace(FAST, max_epochs=0), n_clusters=6, keep_pretrained=True)
    pretrained = first.pretrained
    model, report = fit_dec(X, SMALL, dataclasses.replace(FAST, max_epochs=0), n_clusters=4, pretrained=pretrained)
    assert np.isnan(report.pretrain_loss) and report.pretrained is None and model.n_clusters == 4
    for name, weights in pretrained.autoencoder.state_dict().items():
        assert torch.equal(model.autoencoder.state_dict()[name], weights), name
    training, _ = fit_dec(X, SMALL, dataclasses.replace(FAST, max_epochs=1), n_clusters=4, pretrained=pretrained)
    assert not torch.equal(training.autoencoder.encoder[0].weight, pretrained.autoencoder.encoder[0].weight)
    assert torch.equal(pretrained.autoencoder.encoder[0].weight, first.pretrained.autoencoder.encoder[0].weight)


def test_idec_keeps_the_reconstruction_that_dec_gives_up(wordnet_small):
    """IDEC (reconstruction kept during self-training) ends with a lower reconstruction error than DEC
    from the same pretrained autoencoder, and trains the decoder, which DEC leaves untouched."""
    X, _ = wordnet_small
    data = torch.as_tensor(X)
    _, first = fit_dec(X, SMALL, dataclasses.replace(FAST, max_epochs=0), n_clusters=6, keep_pretrained=True)
    errors, decoders = {}, {}
    for weight in (0.0, 10.0):
        config = dataclasses.replace(FAST, max_epochs=10, tol=0.0, reconstruction_weight=weight, lr=1e-3)
        model, _ = fit_dec(X, SMALL, config, n_clusters=6, pretrained=first.pretrained)
        with torch.no_grad():
            errors[weight] = float(torch.nn.functional.mse_loss(model.autoencoder(data), data))
        decoders[weight] = torch.equal(model.autoencoder.decoder[0].weight,
                                       first.pretrained.autoencoder.decoder[0].weight)
    assert decoders == {0.0: True, 10.0: False}
    assert errors[10.0] < errors[0.0]


def test_bfloat16_training_is_finite_reproducible_and_clusters(wordnet_small):
    X, y = wordnet_small
    config = dataclasses.replace(FAST, precision="bfloat16")
    first, _ = fit_dec(X, SMALL, config, n_clusters=6)
    second, _ = fit_dec(X, SMALL, config, n_clusters=6)
    assert all(torch.isfinite(t).all() for t in first.state_dict().values())
    assert torch.equal(first.centres, second.centres) and first.centres.dtype == torch.float32
    assert cluster_accuracy(y, first.predict(X)[0]) > 0.45  # as float32 (chance 1/6)



def test_starting_from_a_pretrained_model_leaves_torchs_global_random_state_alone(wordnet_small):
    X, _ = wordnet_small
    _, first = fit_dec(X, SMALL, dataclasses.replace(FAST, max_epochs=0), n_clusters=6, keep_pretrained=True)
    before = torch.random.get_rng_state()
    fit_dec(X, SMALL, dataclasses.replace(FAST, max_epochs=1), n_clusters=4, pretrained=first.pretrained)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_auto_precision_is_bfloat16_only_where_the_cpu_multiplies_in_it(wordnet_small, monkeypatch):
    X, _ = wordnet_small
    short = dataclasses.replace(FAST, pretrain_epochs=3, max_epochs=1)
    trained = {p: fit_dec(X, SMALL, dataclasses.replace(short, precision=p), n_clusters=6)[0].centres
               for p in ("float32", "bfloat16")}
    assert not torch.equal(trained["float32"], trained["bfloat16"])  # so the comparisons below can tell them apart
    for native, expected in ((False, "float32"), (True, "bfloat16")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        assert resolve_precision("auto", torch.device("cpu")) == expected
        model, _ = fit_dec(X, SMALL, dataclasses.replace(short, precision="auto"), n_clusters=6)
        assert torch.equal(model.centres, trained[expected])


def reconstruction_error(model, X: torch.Tensor) -> float:
    """The autoencoder's mean squared error rebuilding ``X`` (no corruption, no gradient)."""
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(model.autoencoder(X), X))


def test_layerwise_stacking_alone_rebuilds_real_images(mnist_small):
    """The paper's greedy stacking: each layer pair trained on the codes below it. With no
    end-to-end epochs the stacked autoencoder already rebuilds images better than their mean
    image does, which a fresh one does not."""
    X = torch.as_tensor(mnist_small[0])
    baseline = float(((X - X.mean(0)) ** 2).mean())
    model = new_model((784, 128, 64, 10), 10, alpha=1.0, latent_radius=0.0, seed=0)
    assert reconstruction_error(model, X) > baseline
    losses = pretrain_layerwise(model, X, epochs=30, lr=1e-3, batch_size=64, noise=0.2,
                                generator=torch.Generator().manual_seed(0))
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert reconstruction_error(model, X) < 0.8 * baseline  # measured 0.043 against 0.066


def test_sgd_pretraining_at_the_reference_step_rebuilds_real_images(mnist_small):
    """``pretrain_optimiser = "sgd"``: SGD with momentum 0.9 at DEC-keras's MNIST step (1.0)
    rebuilds images better than their mean image does; Adam at that step does not, so
    the optimiser really changed."""
    X = torch.as_tensor(mnist_small[0])
    baseline = float(((X - X.mean(0)) ** 2).mean())

    def pretrained(optimiser: str) -> float:
        model = new_model((784, 128, 64, 10), 10, alpha=1.0, latent_radius=0.0, seed=0)
        pretrain_autoencoder(model, X, epochs=20, lr=1.0, batch_size=64, noise=0.0,
                             generator=torch.Generator().manual_seed(0), optimiser=optimiser)
        return reconstruction_error(model, X)

    assert pretrained("sgd") < 0.8 * baseline
    assert not pretrained("adam") < baseline


def test_fit_dec_runs_layerwise_pretraining_when_asked(wordnet_small):
    X, _ = wordnet_small
    stacked = dataclasses.replace(FAST, layerwise_epochs=3)
    first, _ = fit_dec(X, SMALL, stacked, n_clusters=6)
    again, _ = fit_dec(X, SMALL, stacked, n_clusters=6)
    without, _ = fit_dec(X, SMALL, FAST, n_clusters=6)
    assert torch.equal(first.centres, again.centres)
    assert not torch.equal(first.autoencoder.encoder[0].weight, without.autoencoder.encoder[0].weight)
