"""The DEC model: maths, network, training, metrics and checkpoints (no Kafka, no Redis)."""

from stream_dec.model.checkpoint import ModelVersion, VersionHeader
from stream_dec.model.dec import DEC, Autoencoder, resolve_device
from stream_dec.model.estimator import DECClusterer
from stream_dec.model.training import fit_dec

__all__ = ["DEC", "DECClusterer", "Autoencoder", "ModelVersion", "VersionHeader", "fit_dec", "resolve_device"]
