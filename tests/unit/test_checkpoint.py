import json
import re

import pytest
import torch
from safetensors.torch import save as save_tensors

from stream_dec.errors import CheckpointError
from stream_dec.model import DEC, ModelVersion


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = DEC((12, 8, 3), n_clusters=4, alpha=1.0)
    with torch.no_grad():
        model.centres.normal_()
    version = ModelVersion.from_model(model, version=3, parent=2, strategy="ewc", metrics={"loss": 0.5})
    version.save(tmp_path)
    return model, tmp_path


def test_round_trip_reproduces_the_model(saved):
    model, folder = saved
    loaded = ModelVersion.load(folder)
    assert (loaded.header.version, loaded.header.parent, loaded.header.strategy) == (3, 2, "ewc")
    assert loaded.header.dims == (12, 8, 3) and loaded.header.n_clusters == 4
    x = torch.randn(9, 12)
    assert torch.equal(loaded.to_model()(x), model.eval()(x))


def test_auxiliary_tensors_travel_with_the_version(tmp_path):
    model = DEC((6, 2), n_clusters=2)
    fisher = {f"fisher.{name}": torch.rand_like(p) for name, p in model.named_parameters()}
    ModelVersion.from_model(model, version=1, auxiliary=fisher).save(tmp_path)
    loaded = ModelVersion.load(tmp_path)
    assert set(loaded.auxiliary("fisher.")) == {name for name, _ in model.named_parameters()}
    loaded.to_model()  # auxiliaries are not part of the network


def test_tampered_tensor_bytes_fail_the_checksum(saved):
    _, folder = saved
    payload = bytearray((folder / "model.safetensors").read_bytes())
    payload[-1] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(payload))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        ModelVersion.load(folder)


def rewrite(folder, tensors, **header_changes):
    """Replace the tensors with a consistent checksum, so only the shape check can catch it."""
    import hashlib

    payload = save_tensors(tensors)
    header = json.loads((folder / "model.json").read_text())
    header.update(sha256=hashlib.sha256(payload).hexdigest(), **header_changes)
    (folder / "model.safetensors").write_bytes(payload)
    (folder / "model.json").write_text(json.dumps(header))


def test_wrong_shapes_are_rejected_even_with_a_valid_checksum(saved):
    _, folder = saved
    tensors = dict(ModelVersion.load(folder).tensors)
    tensors["centres"] = torch.zeros(5, 3)
    rewrite(folder, tensors)
    with pytest.raises(CheckpointError, match=r"'centres' has shape \(5, 3\), expected \(4, 3\)"):
        ModelVersion.load(folder)


def test_header_that_disagrees_with_tensors_is_rejected(saved):
    _, folder = saved
    rewrite(folder, dict(ModelVersion.load(folder).tensors), dims=[12, 8, 4])
    with pytest.raises(CheckpointError, match="shape"):
        ModelVersion.load(folder)


def test_missing_and_unexpected_tensors_are_rejected(saved):
    _, folder = saved
    tensors = dict(ModelVersion.load(folder).tensors)
    rewrite(folder, {k: v for k, v in tensors.items() if k != "centres"})
    with pytest.raises(CheckpointError, match="'centres' is missing"):
        ModelVersion.load(folder)
    rewrite(folder, tensors | {"payload": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="unexpected tensor 'payload'"):
        ModelVersion.load(folder)


def test_bad_header_fields_are_rejected(saved):
    _, folder = saved
    header = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps(header | {"version": "3"}))
    with pytest.raises(CheckpointError, match="'version' must be an integer"):
        ModelVersion.load(folder)
    (folder / "model.json").write_text(json.dumps(header | {"evil": 1}))
    with pytest.raises(CheckpointError, match="unknown key 'evil'"):
        ModelVersion.load(folder)
    (folder / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="header is not JSON"):
        ModelVersion.load(folder)


def test_pickle_payload_is_never_unpickled(saved, tmp_path):
    import hashlib
    import pickle

    _, folder = saved

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    payload = pickle.dumps(Boom())
    header = json.loads((folder / "model.json").read_text())
    (folder / "model.safetensors").write_bytes(payload)
    (folder / "model.json").write_text(json.dumps(header | {"sha256": hashlib.sha256(payload).hexdigest()}))
    with pytest.raises(CheckpointError, match="not valid safetensors"):
        ModelVersion.load(folder)


def test_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="not a model directory"):
        ModelVersion.load(tmp_path)


@pytest.mark.parametrize("header_json, reason", [
    (b"[" * 100_000 + b"]" * 100_000, "the limit is 65536"),  # a huge header
    (b'{"a": ' * 5000 + b"1" + b"}" * 5000, "header is not JSON that stream-dec reads (RecursionError)"),
])
def test_hostile_headers_are_rejected_not_a_crash(saved, header_json, reason):
    _, folder = saved
    (folder / "model.json").write_bytes(header_json)
    with pytest.raises(CheckpointError, match=re.escape(reason)):
        ModelVersion.load(folder)


@pytest.mark.parametrize("field, value", [("latent_radius", "Infinity"), ("alpha", "Infinity"), ("alpha", "NaN")])
def test_non_finite_header_numbers_are_rejected(saved, field, value):
    """latent_radius = inf once passed and labelled everything 0."""
    _, folder = saved
    text = (folder / "model.json").read_text()
    header = json.loads(text)
    (folder / "model.json").write_text(json.dumps(header | {field: 0.5}).replace("0.5", value))
    with pytest.raises(CheckpointError, match=f"'{field}' must be finite"):
        ModelVersion.load(folder)
