"""Model versions: tensors in safetensors plus a JSON header, never a pickle.

A :class:`ModelVersion` is everything needed to reproduce labels: the DEC weights and
centres as safetensors bytes (a format that cannot execute code when loaded) and a
:class:`VersionHeader` (dims, K, alpha, version, parent, created-at, strategy, metrics
and the sha256 of the tensor bytes). The same two byte strings are written to a model
directory (``model.safetensors`` + ``model.json``) and, later, to the centre-versions
topic. Decoding checks the checksum, every field's type, and every tensor's name and
shape against the header before any model is built; a mismatch raises
:class:`~stream_dec.errors.CheckpointError`.

Examples
--------
>>> import tempfile
>>> model = DEC((8, 4, 2), n_clusters=3)
>>> saved = ModelVersion.from_model(model, version=1)
>>> folder = tempfile.mkdtemp()
>>> saved.save(folder)
>>> loaded = ModelVersion.load(folder)
>>> loaded.header.version, loaded.header.dims, loaded.header.sha256 == saved.header.sha256
(1, (8, 4, 2), True)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from stream_dec.errors import CheckpointError
from stream_dec.model.dec import DEC
from stream_dec.typed import from_mapping, require

FORMAT = "stream-dec/1"
TENSORS_FILE = "model.safetensors"
HEADER_FILE = "model.json"
MAX_HEADER_BYTES = 64 * 1024
"""Largest JSON header read (a real one is about 1 KiB); also bounds its nesting."""
AUXILIARY_PREFIXES = ("fisher.",)
"""Extra per-parameter tensors a version may carry (e.g. EWC's Fisher diagonal)."""


@dataclass(frozen=True)
class VersionHeader:
    """The JSON half of a model version.

    Attributes
    ----------
    dims
        Autoencoder widths, input first, latent last.
    n_clusters, alpha, latent_radius
        K, the Student-t degrees of freedom and the latent sphere's radius (0: none).
    version, parent
        This version's number (>= 1) and the one it was derived from (``None`` for a
        model trained from scratch).
    created_at
        ISO-8601 UTC timestamp.
    strategy
        How it was made (``"train"``, ``"translate"``, ``"ewc"``, ...).
    metrics
        Numbers measured when it was made (loss, drift, agreement, ...).
    sha256
        Hex digest of the safetensors bytes.
    epoch
        Fencing epoch of the updater lease under which it was published (0: not published
        by an updater): readers reject a record from an epoch older than one they saw.
    """

    dims: tuple[int, ...]
    n_clusters: int
    alpha: float
    version: int
    sha256: str
    latent_radius: float = 0.0
    parent: int | None = None
    created_at: str = ""
    strategy: str = "train"
    metrics: dict[str, float] = field(default_factory=dict)
    epoch: int = 0
    format: str = FORMAT

    def __post_init__(self) -> None:
        require(len(self.dims) >= 2 and all(d >= 1 for d in self.dims), "dims", "at least two positive widths", self.dims)
        require(self.n_clusters >= 2, "n_clusters", ">= 2", self.n_clusters)
        require(0 < self.alpha < math.inf, "alpha", "finite and > 0", self.alpha)
        require(0 <= self.latent_radius < math.inf, "latent_radius", "finite and >= 0", self.latent_radius)
        require(self.version >= 1, "version", ">= 1", self.version)
        require(self.epoch >= 0, "epoch", ">= 0", self.epoch)
        require(self.parent is None or 1 <= self.parent < self.version, "parent", "None or in [1, version)", self.parent)
        require(len(self.sha256) == 64, "sha256", "a 64-digit hex digest", self.sha256)
        require(self.format == FORMAT, "format", repr(FORMAT), self.format)

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True).encode()


@dataclass(frozen=True)
class ModelVersion:
    """A verified model version: header plus tensors (model state and auxiliaries)."""

    header: VersionHeader
    tensors: dict[str, torch.Tensor]

    @classmethod
    def from_model(
        cls,
        model: DEC,
        *,
        version: int,
        parent: int | None = None,
        strategy: str = "train",
        metrics: dict[str, float] | None = None,
        auxiliary: dict[str, torch.Tensor] | None = None,
    ) -> ModelVersion:
        """Snapshot ``model`` (moved to the CPU) as version ``version``; its tensors must be finite."""
        tensors = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
        tensors.update({name: t.detach().to("cpu").contiguous() for name, t in (auxiliary or {}).items()})
        _check_finite(tensors, f"model for version {version}")
        header = VersionHeader(
            dims=model.dims,
            n_clusters=model.n_clusters,
            alpha=model.alpha,
            latent_radius=model.latent_radius,
            version=version,
            parent=parent,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            strategy=strategy,
            metrics={k: float(v) for k, v in (metrics or {}).items()},
            sha256=hashlib.sha256(save_tensors(tensors)).hexdigest(),
        )
        return cls(header, tensors)

    def stamped(self, epoch: int) -> ModelVersion:
        """This version carrying the fencing ``epoch`` it is published under (the tensors are shared)."""
        return dataclasses.replace(self, header=dataclasses.replace(self.header, epoch=epoch))

    def to_bytes(self) -> tuple[bytes, bytes]:
        """(header JSON, safetensors bytes), the form stored on disk and on the topic."""
        payload = save_tensors(self.tensors)
        if hashlib.sha256(payload).hexdigest() != self.header.sha256:
            raise CheckpointError(f"version {self.header.version}: tensors changed after the header was made")
        return self.header.to_json(), payload

    @classmethod
    def from_bytes(cls, header_json: bytes, payload: bytes, *, source: str) -> ModelVersion:
        """Verify and decode; ``source`` names the file or record in errors."""
        if len(header_json) > MAX_HEADER_BYTES:
            raise CheckpointError(f"{source}: header is {len(header_json)} bytes, the limit is {MAX_HEADER_BYTES}")
        try:
            raw = json.loads(header_json)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise CheckpointError(f"{source}: header is not JSON that stream-dec reads ({type(exc).__name__})") from None
        header = from_mapping(VersionHeader, raw, source=f"{source}: header", error=CheckpointError)
        digest = hashlib.sha256(payload).hexdigest()
        if digest != header.sha256:
            raise CheckpointError(f"{source}: checksum mismatch (header {header.sha256[:12]}..., tensors {digest[:12]}...)")
        try:
            tensors = load_tensors(payload)
        except (SafetensorError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{source}: tensors are not valid safetensors ({exc})") from None
        _check_shapes(header, tensors, source)
        return cls(header, tensors)

    def save(self, directory: str | Path, overwrite: bool = False, extras: dict[str, bytes] | None = None) -> None:
        """Write ``model.json`` and ``model.safetensors`` (and ``extras``: file name -> bytes, such
        as the cluster catalogue) as the folder ``directory``, atomically.

        All files are written to a temporary folder beside it, which is then renamed to
        ``directory``: a reader never sees half a model. A ``directory`` that exists and
        is not empty is replaced only with ``overwrite`` (a version's children name it as
        their parent); otherwise :class:`CheckpointError`.
        """
        directory = Path(directory)
        if occupied(directory) and not overwrite:
            raise CheckpointError(f"{directory}: exists and is not empty; refusing to replace it")
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            header_json, payload = self.to_bytes()
            (staging / TENSORS_FILE).write_bytes(payload)
            (staging / HEADER_FILE).write_bytes(header_json)
            for name, data in (extras or {}).items():
                (staging / Path(name).name).write_bytes(data)
            staging.chmod(0o755)
            _replace(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @classmethod
    def load(cls, directory: str | Path) -> ModelVersion:
        """Read and verify a model directory written by :meth:`save`."""
        directory = Path(directory)
        try:
            header_json = (directory / HEADER_FILE).read_bytes()
            payload = (directory / TENSORS_FILE).read_bytes()
        except FileNotFoundError as exc:
            raise CheckpointError(f"{directory}: not a model directory (missing {Path(exc.filename).name})") from None
        return cls.from_bytes(header_json, payload, source=str(directory))

    @property
    def auxiliary_tensors(self) -> dict[str, torch.Tensor]:
        """All auxiliary tensors under their full names (``"fisher.centres"``, ...)."""
        return {name: t for name, t in self.tensors.items() if name.startswith(AUXILIARY_PREFIXES)}

    def auxiliary(self, prefix: str) -> dict[str, torch.Tensor]:
        """Auxiliary tensors under ``prefix`` (e.g. ``"fisher."``), keyed by parameter name."""
        return {name[len(prefix):]: t for name, t in self.tensors.items() if name.startswith(prefix)}

    def to_model(self, device: torch.device | str = "cpu") -> DEC:
        """Build the DEC network this version describes, on ``device``, in eval mode."""
        model = DEC(self.header.dims, self.header.n_clusters, alpha=self.header.alpha,
                    latent_radius=self.header.latent_radius)
        state = {k: v for k, v in self.tensors.items() if k not in self.auxiliary_tensors}
        model.load_state_dict(state)
        return model.to(device).eval()


def occupied(path: Path) -> bool:
    """Whether ``path`` holds something a model written there would replace (a file, or a non-empty folder)."""
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _replace(new: Path, target: Path) -> None:
    """Rename folder ``new`` to ``target``; a non-empty ``target`` is moved aside first, then removed."""
    try:
        os.replace(new, target)  # atomic when target is absent or an empty folder
        return
    except OSError:
        if not target.exists():
            raise
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    os.replace(target, aside / target.name)
    os.replace(new, target)
    shutil.rmtree(aside, ignore_errors=True)


def _check_shapes(header: VersionHeader, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Every model tensor present with the shape the header implies; auxiliaries match a parameter."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in DEC(header.dims, header.n_clusters).state_dict().items()}
    for name, shape in expected.items():
        if name not in tensors:
            raise CheckpointError(f"{source}: tensor '{name}' is missing")
        if tuple(tensors[name].shape) != shape:
            raise CheckpointError(f"{source}: tensor '{name}' has shape {tuple(tensors[name].shape)}, expected {shape}")
    for name, tensor in tensors.items():
        if name in expected:
            continue
        prefix = next((p for p in AUXILIARY_PREFIXES if name.startswith(p)), None)
        base = name[len(prefix):] if prefix else None
        if base not in expected or tuple(tensor.shape) != expected[base]:
            raise CheckpointError(f"{source}: unexpected tensor '{name}' with shape {tuple(tensor.shape)}")
    _check_finite(tensors, source)


def _check_finite(tensors: dict[str, torch.Tensor], source: str) -> None:
    """Every tensor floating point and finite: a version every reader accepts (one check for writing and reading)."""
    for name, tensor in tensors.items():
        if not tensor.dtype.is_floating_point or not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{source}: tensor '{name}' is not finite floating point")
