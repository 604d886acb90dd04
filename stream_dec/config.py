"""Typed, validated configuration loaded from TOML.

Configuration is data: frozen dataclasses with documented defaults, filled from a TOML
file (read with :mod:`tomllib`) and validated once. Unknown keys, wrong types and
impossible values raise :class:`~stream_dec.errors.ConfigError` naming the file and the
key. Code never reads raw dicts past :func:`load_config`.

The documented defaults live in ``config/default.toml``; a test checks that file
against these dataclasses so the two cannot drift.

Examples
--------
>>> cfg = config_from_mapping({"model": {"latent_dim": 16}}, source="inline")
>>> cfg.model.latent_dim, cfg.model.hidden_dims
(16, ())
>>> config_from_mapping({"model": {"latnt_dim": 16}}, source="inline")
Traceback (most recent call last):
...
stream_dec.errors.ConfigError: inline: unknown key 'model.latnt_dim' (expected one of: alpha, clusters, geometry, hidden_dims, latent_dim, latent_radius, name)
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from stream_dec.errors import ConfigError
from stream_dec.typed import SECRET_WORDS, from_mapping, require


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the DEC model.

    Parameters
    ----------
    hidden_dims
        Widths of the autoencoder's hidden layers between the input and the latent
        layer; the input width D comes from the data. ``[]`` (default) gives a linear
        autoencoder: on sentence embeddings, a wide linear map keeps what KMeans finds
        in the raw space, while a nonlinear bottleneck (D-256-32) lost 3-6 ACC points.
    latent_dim
        Width of the latent (embedded) space in which the centres live (default 384,
        the width of common sentence encoders).
    clusters
        Number of clusters K, used when the data has no labels to count.
    alpha
        Degrees of freedom of the Student-t kernel (DEC eq. 1).
    geometry
        Latent geometry: ``"cosine"`` projects latent codes and centres onto a sphere
        of radius ``latent_radius``; ``"euclidean"`` keeps the paper's; ``"auto"``
        (default) picks cosine when every training row is a unit vector, as sentence
        encoders emit, and euclidean otherwise (on MNIST pixels cosine lost 3 ACC
        points and fell below KMeans).
    latent_radius
        Radius of the sphere in cosine geometry (> 0): it sets how sharp Q is.
    name
        Model name: the key of its version records and its reservoir's Redis prefix.
    """

    hidden_dims: tuple[int, ...] = ()
    latent_dim: int = 384
    clusters: int = 10
    alpha: float = 50.0
    geometry: Literal["auto", "cosine", "euclidean"] = "auto"
    latent_radius: float = 7.0
    name: str = "default"

    def __post_init__(self) -> None:
        require(all(d >= 1 for d in self.hidden_dims), "hidden_dims", "positive widths", self.hidden_dims)
        require(self.latent_dim >= 1, "latent_dim", ">= 1", self.latent_dim)
        require(self.clusters >= 2, "clusters", ">= 2", self.clusters)
        require(self.alpha > 0, "alpha", "> 0", self.alpha)
        require(self.latent_radius > 0, "latent_radius", "> 0", self.latent_radius)


@dataclass(frozen=True)
class TrainConfig:
    """How DEC is trained: autoencoder pretraining, KMeans init, self-training.

    Parameters
    ----------
    layerwise_epochs
        Epochs of greedy layer-wise pretraining for each layer (the paper's stacked
        denoising autoencoders, section 3.2), before the end-to-end pretraining; 0 skips it.
    layerwise_noise
        Dropout of the inputs and of the hidden code while a layer is pretrained on its
        own (the paper's 0.2).
    pretrain_epochs
        Epochs of end-to-end denoising-autoencoder pretraining.
    pretrain_lr
        Learning rate for pretraining (layer-wise and end to end).
    pretrain_optimiser
        Pretraining optimiser: ``"adam"``, or ``"sgd"`` with momentum 0.9 (the DEC paper's
        and its reference reimplementation's for MNIST).
    batch_size
        Mini-batch size for both stages (samples).
    noise
        Input corruption for the denoising autoencoder: fraction of inputs dropped.
    n_init
        KMeans restarts for the centre initialisation in latent space.
    lr
        Learning rate of self-training (encoder and centres).
    optimiser
        Self-training optimiser: ``"adam"``, or ``"sgd"`` with momentum 0.9 (the DEC
        paper's).
    update_interval
        Iterations between recomputing the target distribution P over the whole window.
    tol
        Stop when fewer than this fraction of labels change between target updates.
    max_epochs
        Upper bound on self-training epochs.
    reconstruction_weight
        Weight of the reconstruction loss kept during self-training, against the
        clustering loss's 1 (IDEC's ``L_r + gamma L_c`` is ``1 / gamma``, at a step
        ``gamma`` times smaller);
        0 gives the original DEC objective.
    precision
        ``"float32"``, or ``"bfloat16"``: the network's matrix products in bfloat16 during
        pretraining and self-training (losses, targets and weights stay float32), faster
        on CPUs with AVX-512 BF16 or AMX and on GPUs, and several times slower on CPUs
        without them, which emulate it; ``"auto"``: bfloat16 where the device has it,
        else float32.
    seed
        Seed for every random choice (weights, batches, noise, KMeans).
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    """

    layerwise_epochs: int = 0
    layerwise_noise: float = 0.2
    pretrain_epochs: int = 50
    pretrain_lr: float = 1e-3
    pretrain_optimiser: Literal["adam", "sgd"] = "adam"
    batch_size: int = 256
    noise: float = 0.1
    n_init: int = 10
    lr: float = 1e-4
    update_interval: int = 100
    tol: float = 0.001
    max_epochs: int = 30
    reconstruction_weight: float = 0.1
    optimiser: Literal["adam", "sgd"] = "adam"
    precision: Literal["auto", "float32", "bfloat16"] = "float32"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        require(self.layerwise_epochs >= 0, "layerwise_epochs", ">= 0", self.layerwise_epochs)
        require(0 <= self.layerwise_noise < 1, "layerwise_noise", "in [0, 1)", self.layerwise_noise)
        require(self.pretrain_epochs >= 0, "pretrain_epochs", ">= 0", self.pretrain_epochs)
        require(self.pretrain_lr > 0, "pretrain_lr", "> 0", self.pretrain_lr)
        require(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        require(0 <= self.noise < 1, "noise", "in [0, 1)", self.noise)
        require(self.n_init >= 1, "n_init", ">= 1", self.n_init)
        require(self.lr > 0, "lr", "> 0", self.lr)
        require(self.update_interval >= 1, "update_interval", ">= 1", self.update_interval)
        require(0 <= self.tol < 1, "tol", "in [0, 1)", self.tol)
        require(self.max_epochs >= 0, "max_epochs", ">= 0", self.max_epochs)
        require(self.reconstruction_weight >= 0, "reconstruction_weight", ">= 0", self.reconstruction_weight)


Strategy = Literal["translate", "recentre", "refit", "ewc", "anchored", "grow", "retrain", "frozen"]
STRATEGIES: tuple[str, ...] = typing.get_args(Strategy)
Scenario = Literal["replace-half", "shift"]
"""Window sequences of the continual-update experiment (:mod:`stream_dec_lab.scenarios`)."""
SCENARIOS: tuple[str, ...] = typing.get_args(Scenario)


@dataclass(frozen=True)
class TranslateConfig:
    """Centre translation: KMeans on the window, Hungarian match, move ``ratio`` of the way.

    Parameters
    ----------
    ratio
        Fraction of the way each old centre moves toward its matched new centroid (the
        default's grounds: benchmarks/README.md, the frontier).
    n_init
        KMeans restarts on the window's latent codes.
    """

    ratio: float = 0.05
    n_init: int = 3

    def __post_init__(self) -> None:
        require(0 <= self.ratio <= 1, "ratio", "in [0, 1]", self.ratio)
        require(self.n_init >= 1, "n_init", ">= 1", self.n_init)


@dataclass(frozen=True)
class FineTuneConfig:
    """The short self-training run shared by ``refit`` and ``ewc``.

    Parameters
    ----------
    epochs
        Passes over the window (may be fractional).
    lr
        Adam learning rate for encoder and centres.
    clip_norm
        Gradient-norm clipping threshold.
    batch_size, update_interval
        As in ``[train]``: mini-batch size and iterations between target updates.
    reconstruction_weight
        IDEC reconstruction term during the fine-tune.
    """

    epochs: float = 2.0
    lr: float = 1e-4
    clip_norm: float = 1.0
    batch_size: int = 256
    update_interval: int = 50
    reconstruction_weight: float = 0.1

    def __post_init__(self) -> None:
        require(self.epochs > 0, "epochs", "> 0", self.epochs)
        require(self.lr > 0, "lr", "> 0", self.lr)
        require(self.clip_norm > 0, "clip_norm", "> 0", self.clip_norm)
        require(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        require(self.update_interval >= 1, "update_interval", ">= 1", self.update_interval)
        require(self.reconstruction_weight >= 0, "reconstruction_weight", ">= 0", self.reconstruction_weight)


@dataclass(frozen=True)
class RefitConfig:
    """``refit``: fine-tune with an L2 anchor to the previous version's parameters.

    Parameters
    ----------
    anchor
        Weight of ``sum_i (theta_i - theta_prev_i)^2``.
    """

    anchor: float = 10.0

    def __post_init__(self) -> None:
        require(self.anchor >= 0, "anchor", ">= 0", self.anchor)


@dataclass(frozen=True)
class EwcConfig:
    """``ewc``: fine-tune with the (online) elastic weight consolidation penalty.

    Parameters
    ----------
    lam
        Weight of ``sum_i F_i (theta_i - theta_prev_i)^2``; F is normalised to mean 1,
        so ``lam`` is in the same units as refit's ``anchor``.
    gamma
        Online EWC decay: F_t = gamma * F_(t-1) + F(window t).
    fisher_batch
        Mini-batch size for the Fisher estimate (mean of squared mini-batch gradients).
    """

    lam: float = 100.0
    gamma: float = 0.9
    fisher_batch: int = 32

    def __post_init__(self) -> None:
        require(self.lam >= 0, "lam", ">= 0", self.lam)
        require(0 <= self.gamma <= 1, "gamma", "in [0, 1]", self.gamma)
        require(self.fisher_batch >= 1, "fisher_batch", ">= 1", self.fisher_batch)


@dataclass(frozen=True)
class RecentreConfig:
    """``recentre``: move each centre toward the mean of the window samples it labels.

    Parameters
    ----------
    ratio
        Fraction of the way each centre moves (0: no change, 1: a full Lloyd step).
    iterations
        Damped Lloyd steps per update (labels are recomputed between them).
    """

    ratio: float = 0.5
    iterations: int = 1

    def __post_init__(self) -> None:
        require(0 <= self.ratio <= 1, "ratio", "in [0, 1]", self.ratio)
        require(self.iterations >= 1, "iterations", ">= 1", self.iterations)


@dataclass(frozen=True)
class AnchoredConfig:
    """``anchored``: SGD self-training with distillation to the previous version on retained samples.

    Parameters
    ----------
    distill
        Weight of KL(Q_old || Q_new) on the retained samples (0: free self-training).
    lr, epochs, reconstruction_weight
        SGD (momentum 0.9) step, passes over the window and IDEC term; they replace
        ``[update.finetune]``'s.
    """

    distill: float = 10.0
    lr: float = 0.01
    epochs: float = 4.0
    reconstruction_weight: float = 0.0

    def __post_init__(self) -> None:
        require(self.distill >= 0, "distill", ">= 0", self.distill)
        require(self.lr > 0, "lr", "> 0", self.lr)
        require(self.epochs > 0, "epochs", "> 0", self.epochs)
        require(self.reconstruction_weight >= 0, "reconstruction_weight", ">= 0", self.reconstruction_weight)


@dataclass(frozen=True)
class GrowConfig:
    """``grow``: open new cluster ids for dense regions of new samples that no centre serves.

    Parameters
    ----------
    budget
        Largest share of retained samples whose label the new ids may take (each
        candidate is checked exactly, on all retained samples and on a random half the
        ranking did not see; part of ``min_agreement``'s allowance). That half still
        vetoes candidates, so agreement on unseen old samples runs a little lower (see
        :mod:`stream_dec.continual.grow`): keep a margin below ``1 - min_agreement``.
    candidates
        KMeans clusters fitted to the window's new samples in latent space: the
        candidate centres.
    min_size
        A new id must take at least this many window samples.
    """

    budget: float = 0.01
    candidates: int = 48
    min_size: int = 20

    def __post_init__(self) -> None:
        require(0 <= self.budget <= 1, "budget", "in [0, 1]", self.budget)
        require(self.candidates >= 1, "candidates", ">= 1", self.candidates)
        require(self.min_size >= 1, "min_size", ">= 1", self.min_size)


@dataclass(frozen=True)
class UpdateConfig:
    """Continual updates: which strategy, its settings, and the safety limits.

    Parameters
    ----------
    strategy
        One of ``translate``, ``recentre``, ``refit``, ``ewc``, ``anchored``, ``grow``,
        ``retrain`` (baseline), ``frozen``.
    max_drift
        Largest allowed relative centre drift (moved distance / median gap between
        neighbouring centres).
    min_agreement
        Smallest allowed fraction of retained samples that keep their cluster id.
    """

    strategy: Strategy = "translate"
    max_drift: float = 0.10
    min_agreement: float = 0.98
    translate: TranslateConfig = field(default_factory=TranslateConfig)
    recentre: RecentreConfig = field(default_factory=RecentreConfig)
    finetune: FineTuneConfig = field(default_factory=FineTuneConfig)
    refit: RefitConfig = field(default_factory=RefitConfig)
    ewc: EwcConfig = field(default_factory=EwcConfig)
    anchored: AnchoredConfig = field(default_factory=AnchoredConfig)
    grow: GrowConfig = field(default_factory=GrowConfig)

    def __post_init__(self) -> None:
        require(self.max_drift >= 0, "max_drift", ">= 0", self.max_drift)
        require(0 <= self.min_agreement <= 1, "min_agreement", "in [0, 1]", self.min_agreement)


KafkaValue = str | int | float | bool
KafkaSettings = dict[str, KafkaValue | dict[str, KafkaValue]]
"""``[kafka]``: librdkafka properties passed as they are (security, SASL, TLS, ...);
sub-tables ``[kafka.consumer]``, ``[kafka.producer]`` and ``[kafka.admin]`` apply to one
client role. A dotted name may be written unquoted (``security.protocol = "SSL"``): TOML
reads it as nested tables, :func:`flatten_kafka` joins it back."""

KAFKA_ROLES = ("consumer", "producer", "admin")


def flatten_kafka(table: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``[kafka]`` with every nested table joined into dotted librdkafka names, role tables kept.

    Without this, ``security.protocol = "SASL_SSL"`` written unquoted became a table that
    no client received: the client connected in PLAINTEXT.

    >>> flatten_kafka({"security": {"protocol": "SSL"}, "consumer": {"session": {"timeout": {"ms": 6000}}}}, "x")
    {'security.protocol': 'SSL', 'consumer': {'session.timeout.ms': 6000}}
    >>> flatten_kafka({"sasl": {"mechanisms": ["PLAIN"]}}, "x")
    Traceback (most recent call last):
    ...
    stream_dec.errors.ConfigError: x: 'kafka.sasl.mechanisms' must be a string, number or boolean, got a list
    """
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: 'kafka' must be a table, got {type(table).__name__}")
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if key in KAFKA_ROLES:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: 'kafka.{key}' must be a table of {key} properties")
            flat[key] = _joined(value, f"{key}.", source)
        else:
            flat.update(_joined({key: value}, "", source))
    return flat


def _joined(table: Mapping[str, Any], where: str, source: str) -> dict[str, KafkaValue]:
    """Nested tables as dotted names; any value that is not a scalar is an error naming its key."""
    flat: dict[str, KafkaValue] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            for name, leaf in _joined(value, f"{where}{key}.", source).items():
                flat[f"{key}.{name}"] = leaf
        elif isinstance(value, (str, int, float, bool)):
            flat[key] = value
        else:
            kind = {list: "a list", dict: "a table"}.get(type(value), type(value).__name__)
            raise ConfigError(f"{source}: 'kafka.{where}{key}' must be a string, number or boolean, got {kind}")
    return flat


@dataclass(frozen=True)
class TopicsConfig:
    """Topic names."""

    embeddings: str = "embeddings"
    labels: str = "labels"
    dead_letters: str = "embeddings-dead-letters"
    versions: str = "centre-versions"

    def __post_init__(self) -> None:
        for name in ("embeddings", "labels", "dead_letters", "versions"):
            require(bool(getattr(self, name)), name, "a topic name", getattr(self, name))


@dataclass(frozen=True)
class LabelerConfig:
    """The real-time labeler (``stream-dec serve``).

    Parameters
    ----------
    group_id
        Kafka consumer group shared by all labelers.
    model_dir
        Model directory to start from when the versions topic has no version yet.
    input_dim
        Embedding width. Needed only for a cold start (no version anywhere yet: the
        labeler samples into the reservoir until version 1 exists); 0 = from the model.
    max_batch, max_wait_ms
        A batch is labelled at ``max_batch`` messages or after ``max_wait_ms``.
    max_in_flight
        Batches whose labels may wait for the broker's acknowledgement while the next
        ones are labelled (at-least-once mode). 1 = wait for each batch before the next
        but one; a crash repeats at most this many batches.
    content_type
        Wire format assumed when a message has no ``content-type`` header.
    max_message_bytes
        Larger input values are dead-lettered as ``oversize``.
    max_key_bytes, max_header_bytes
        Larger input keys, or headers (names and values together), are dead-lettered as
        ``oversize-key`` and ``oversize-headers``: a label carries the key, so a huge key
        would make a label the broker refuses.
    max_id_bytes
        Longest id (UTF-8 bytes, from the JSON ``id`` or the key); longer: ``bad-id``. At
        most 65535 (the reservoir's id field).
    dead_letter_max_bytes
        A dead letter keeps at most this many bytes of the original value (the rest is
        still in the source topic at the offset its headers name).
    delivery
        ``at-least-once`` (commit after every label is acknowledged) or
        ``exactly-once`` (transactional producer; needs broker support).
    device
        ``auto``, ``cpu`` or ``cuda``.
    precision
        The model step on the CPU: ``float32``, or ``bfloat16``: the encoder's last layer
        folded into the centres, so labels are float32's and only the confidence comes
        from a bfloat16 product (within 1e-3 of float32's); faster on CPUs with AVX-512
        BF16 or AMX, slower on those that emulate it. ``auto``: bfloat16 where the CPU
        has it, else float32. On CUDA the model runs in float32.
    threads
        CPU threads for the model (``torch.set_num_threads``); the Kafka client threads
        need the remaining cores.
    model_thread
        Run the model step on a thread of its own: while it labels one batch, the
        labeler produces the batch before and decodes the one after (torch releases the
        GIL while it multiplies). It trades CPU for rate, and pays only where a core is
        free. ``false`` (default): one batch at a time on one thread. ``exactly-once``
        delivery always runs so: a failed transaction rewinds to its own batch.
    retry_backoff_ms, retry_backoff_max_ms
        First and largest wait between retries of a failed produce or commit.
    log_interval_s
        Seconds between structured stats log lines.
    startup_timeout_s
        At start-up, how long to wait for the broker (reading the versions topic) before
        exiting with an error.
    instance_id
        This replica's name in the group, for exactly-once delivery: the producer's
        ``transactional.id`` is ``<group_id>-<instance_id>``. It must be stable across
        restarts of one replica (so a restart fences its own zombie) and unique across
        replicas (or they fence each other). Empty (default): the host name, which is
        both in Docker Compose and in a Kubernetes StatefulSet.
    """

    group_id: str = "stream-dec-labelers"
    model_dir: str = ""
    input_dim: int = 0
    max_batch: int = 2048
    max_wait_ms: int = 50
    max_in_flight: int = 4
    content_type: Literal["application/json", "application/x-float32"] = "application/json"
    max_message_bytes: int = 1_048_576
    max_key_bytes: int = 4096
    max_header_bytes: int = 16_384
    max_id_bytes: int = 4096
    dead_letter_max_bytes: int = 65_536
    delivery: Literal["at-least-once", "exactly-once"] = "at-least-once"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "float32", "bfloat16"] = "auto"
    threads: int = 1
    model_thread: bool = False
    retry_backoff_ms: int = 100
    retry_backoff_max_ms: int = 5_000
    log_interval_s: float = 10.0
    startup_timeout_s: float = 10.0
    instance_id: str = ""

    def __post_init__(self) -> None:
        require(self.input_dim >= 0, "input_dim", ">= 0", self.input_dim)
        require(self.max_batch >= 1, "max_batch", ">= 1", self.max_batch)
        require(self.max_wait_ms >= 0, "max_wait_ms", ">= 0", self.max_wait_ms)
        require(self.max_in_flight >= 1, "max_in_flight", ">= 1", self.max_in_flight)
        require(self.max_message_bytes >= 1, "max_message_bytes", ">= 1", self.max_message_bytes)
        require(self.max_key_bytes >= 0, "max_key_bytes", ">= 0", self.max_key_bytes)
        require(self.max_header_bytes >= 0, "max_header_bytes", ">= 0", self.max_header_bytes)
        require(0 <= self.max_id_bytes <= 65535, "max_id_bytes", "in [0, 65535]", self.max_id_bytes)
        require(self.dead_letter_max_bytes >= 0, "dead_letter_max_bytes", ">= 0", self.dead_letter_max_bytes)
        require(self.threads >= 1, "threads", ">= 1", self.threads)
        require(self.retry_backoff_ms >= 1, "retry_backoff_ms", ">= 1", self.retry_backoff_ms)
        require(self.retry_backoff_max_ms >= self.retry_backoff_ms, "retry_backoff_max_ms", ">= retry_backoff_ms",
                self.retry_backoff_max_ms)
        require(self.log_interval_s > 0, "log_interval_s", "> 0", self.log_interval_s)
        require(self.startup_timeout_s > 0, "startup_timeout_s", "> 0", self.startup_timeout_s)


@dataclass(frozen=True)
class ReservoirConfig:
    """The Redis reservoir of recent samples.

    Parameters
    ----------
    capacity
        Window size N (samples).
    staging_capacity
        Most new samples held between cycles (uniform reservoir sample); 0 means N. Once
        a version exists, staging holds no more than the next cycle takes (N x
        ``replace_fraction`` of a full window).
    replace_fraction
        Fraction of the window replaced by new samples at each update cycle.
    sample_rate
        Fraction of labelled inputs a labeler offers to the reservoir.
    sample_precision
        How a labeler stores the vectors it offers: ``"bfloat16"`` (half the bytes to send
        and hold; each value within 2^-8 of itself, relative) or ``"float32"`` (exact).
        Samples of either are read.
    write_interval_ms
        How often a labeler writes to Redis (ms); in between it keeps a uniform sample of
        what it labelled in memory (two of staging's room in float32: one filling, one
        being written) and writes only what a merge into staging takes from it. 0 writes
        after each batch.
    """

    capacity: int = 10_000
    staging_capacity: int = 0
    replace_fraction: float = 0.5
    sample_rate: float = 1.0
    sample_precision: Literal["float32", "bfloat16"] = "bfloat16"
    write_interval_ms: int = 1000

    def __post_init__(self) -> None:
        require(self.capacity >= 2, "capacity", ">= 2", self.capacity)
        require(self.staging_capacity >= 0, "staging_capacity", ">= 0", self.staging_capacity)
        require(0 < self.replace_fraction <= 1, "replace_fraction", "in (0, 1]", self.replace_fraction)
        require(0 <= self.sample_rate <= 1, "sample_rate", "in [0, 1]", self.sample_rate)
        require(self.write_interval_ms >= 0, "write_interval_ms", ">= 0", self.write_interval_ms)


@dataclass(frozen=True)
class RedisConfig:
    """Redis connection.

    Parameters
    ----------
    url
        ``redis://host:port/db``, or ``rediss://`` for TLS. It may carry
        ``user:password@``; prefer ``username`` and ``password`` (from the environment).
    username, password
        An ACL user (Redis 6+; empty: the default user) and its password.
    tls_ca_file, tls_cert_file, tls_key_file
        With ``rediss://``: the CA that signed the server's certificate (empty: the
        system's), and a client certificate and key when the server asks for one.
    socket_timeout_s
        Connect and read timeout.
    """

    url: str = "redis://127.0.0.1:6379/0"
    username: str = ""
    password: str = ""
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    socket_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        require(self.socket_timeout_s > 0, "socket_timeout_s", "> 0", self.socket_timeout_s)
        tls_files = self.tls_ca_file or self.tls_cert_file or self.tls_key_file
        require(not tls_files or self.url.startswith("rediss://"), "url", "a rediss:// URL when a tls_* file is set",
                masked_url(self.url))
        require(bool(self.tls_cert_file) == bool(self.tls_key_file), "tls_key_file",
                "set together with tls_cert_file", self.tls_key_file)


@dataclass(frozen=True)
class UpdaterConfig:
    """The updater loop (``stream-dec update-loop``).

    Parameters
    ----------
    update_every
        Run an update once this many new samples were offered since the last one ...
    interval_s
        ... or this many seconds passed, whichever first.
    min_initial
        Cold start: samples needed in staging before the first model is trained.
    max_loss_increase
        Promotion gate: the DEC loss on the window may exceed the current version's
        by at most this fraction (absorbs float noise when an update barely moves).
        Applied only to updates that change the encoder (fine-tunes); one that only
        moves or adds centres (``translate``, ``recentre``, ``grow``) is judged by its
        limits and held-out agreement.
    lease_ttl_ms
        Lifetime of the leader lease; the holder renews it every third of that.
    poll_s
        Seconds between trigger checks.
    transactional
        Publish versions through a transactional producer (``transactional.id``
        ``stream-dec-updater-<model>``), so a new leader fences the previous one's
        producer. False for a broker without transactions: the epoch check every reader
        makes still keeps one history.
    catalogue_texts
        Example texts per cluster in the cluster catalogue published with each version
        (from the inputs' optional ``text``); 0 publishes none (terms, sizes and exemplar
        ids only), for data whose texts must not reach the versions topic.
    """

    update_every: int = 5_000
    interval_s: float = 300.0
    min_initial: int = 2_000
    max_loss_increase: float = 0.001
    lease_ttl_ms: int = 15_000
    poll_s: float = 1.0
    transactional: bool = True
    catalogue_texts: int = 3

    def __post_init__(self) -> None:
        require(self.catalogue_texts >= 0, "catalogue_texts", ">= 0", self.catalogue_texts)
        require(self.update_every >= 1, "update_every", ">= 1", self.update_every)
        require(self.interval_s > 0, "interval_s", "> 0", self.interval_s)
        require(self.min_initial >= 2, "min_initial", ">= 2", self.min_initial)
        require(self.max_loss_increase >= 0, "max_loss_increase", ">= 0", self.max_loss_increase)
        require(self.lease_ttl_ms >= 100, "lease_ttl_ms", ">= 100", self.lease_ttl_ms)
        require(self.poll_s > 0, "poll_s", "> 0", self.poll_s)


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus metrics endpoint. ``port = 0`` turns it off."""

    port: int = 0
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        require(0 <= self.port <= 65535, "port", "in [0, 65535]", self.port)


@dataclass(frozen=True)
class LogConfig:
    """Logging on stderr: level and ``text`` or ``json`` lines."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "json"


@dataclass(frozen=True)
class Config:
    """The whole configuration: one section per concern."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    kafka: KafkaSettings = field(default_factory=lambda: {"bootstrap.servers": "127.0.0.1:9092"})
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    labeler: LabelerConfig = field(default_factory=LabelerConfig)
    reservoir: ReservoirConfig = field(default_factory=ReservoirConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    updater: UpdaterConfig = field(default_factory=UpdaterConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        """Checks across sections: settings that are each valid but cannot work together."""
        staging = self.reservoir.staging_capacity or self.reservoir.capacity
        require(staging >= self.updater.min_initial, "updater.min_initial",
                f"<= the staging capacity ({staging} samples), or the cold start never comes",
                self.updater.min_initial)
        require(self.reservoir.capacity >= self.model.clusters, "reservoir.capacity",
                f">= model.clusters ({self.model.clusters}): KMeans needs a sample per centre",
                self.reservoir.capacity)


def kafka_settings(config: Config, role: Literal["consumer", "producer", "admin"]) -> dict[str, KafkaValue]:
    """``[kafka]``'s shared properties overlaid with ``[kafka.<role>]``'s."""
    shared = {k: v for k, v in config.kafka.items() if not isinstance(v, dict)}
    own = config.kafka.get(role, {})
    return {**shared, **(own if isinstance(own, dict) else {})}


ENV_PREFIX = "STREAM_DEC_"


def load_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a TOML config file (``None``: the defaults), then apply overrides.

    Any key can be overridden from the environment, which is where secrets belong:
    ``STREAM_DEC_<SECTION>__<KEY>`` (``__`` between levels, case-insensitive), e.g.
    ``STREAM_DEC_REDIS__PASSWORD`` or ``STREAM_DEC_LABELER__MAX_BATCH=4096``. Under
    ``[kafka]`` the underscores of a key become dots (librdkafka's names have none):
    ``STREAM_DEC_KAFKA__SASL_PASSWORD`` sets ``sasl.password`` and
    ``STREAM_DEC_KAFKA__CONSUMER__SESSION_TIMEOUT_MS`` sets ``[kafka.consumer]
    session.timeout.ms``.
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path, source = Path(path), str(path)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if "kafka" in data:  # before the overrides, which name the dotted form
        data["kafka"] = flatten_kafka(data["kafka"], source)
    overrides = _environment_overrides(os.environ if environ is None else environ)
    for keys, raw in overrides:
        _set_override(data, keys, raw)
    return config_from_mapping(data, source=source + (" + environment" if overrides else ""))


def _environment_overrides(environ: Mapping[str, str]) -> list[tuple[list[str], str]]:
    found = []
    for name, raw in sorted(environ.items()):
        if name.upper().startswith(ENV_PREFIX):
            keys = [part.lower() for part in name[len(ENV_PREFIX):].split("__")]
            if keys[0] == "kafka":
                keys = keys[:-1] + [keys[-1].replace("_", ".")]
            found.append((keys, raw))
    return found


def _set_override(data: dict, keys: list[str], raw: str) -> None:
    """Put ``raw`` at ``keys``, typed like the field it replaces (strings stay strings)."""
    hint: Any = Config
    table = data
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        hints = typing.get_type_hints(hint) if dataclasses.is_dataclass(hint) else {}
        field_hint = hints.get(key)
        if last:
            replaced = table.get(key)  # [kafka] has no field types: the value it replaces gives one
            kafka_type = type(replaced) if hint is None and isinstance(replaced, (bool, int, float)) else None
            table[key] = _typed_env_value(raw, field_hint or kafka_type)
        else:
            table = table.setdefault(key, {})
            hint = field_hint if field_hint is not None and dataclasses.is_dataclass(field_hint) else None


def _typed_env_value(raw: str, hint: Any) -> Any:
    if hint is str or hint is None:
        return raw  # unknown targets ([kafka] values) stay strings: librdkafka parses them
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # the typed check names the key and what it expects


def masked(config: Config) -> dict[str, Any]:
    """The config as plain data with secret values replaced by ``"***"``.

    >>> masked(config_from_mapping({"redis": {"password": "hunter2"}}, source="x"))["redis"]["password"]
    '***'
    """
    def walk(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        if isinstance(value, str) and value and any(word in key.lower() for word in SECRET_WORDS):
            return "***"
        if isinstance(value, str):
            return masked_url(value)
        return value

    return walk(dataclasses.asdict(config))


def masked_url(url: str) -> str:
    """``url`` with its credentials (``user:password@``) replaced by ``***``, for logs and errors.

    >>> masked_url("rediss://app:hunter2@cache:6380/0"), masked_url("redis://127.0.0.1:6379/0")
    ('rediss://***@cache:6380/0', 'redis://127.0.0.1:6379/0')
    """
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def config_from_mapping(data: Mapping[str, Any], *, source: str) -> Config:
    """Build a :class:`Config` from parsed TOML, naming ``source`` in any error."""
    if "kafka" in data:
        data = {**data, "kafka": flatten_kafka(data["kafka"], source)}
    return from_mapping(Config, data, source=source, error=ConfigError)
