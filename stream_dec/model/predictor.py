"""Batch labelling on the model's device: the model step of the labeler's hot path.

A :class:`Predictor` holds one model version on its device. On CUDA it stages each
batch in a pinned (page-locked) host buffer and copies it with a non-blocking
transfer; on the CPU it wraps the NumPy array without a copy. Inference runs under
``torch.inference_mode``.

Examples
--------
>>> import numpy as np
>>> from stream_dec.model import DEC, ModelVersion
>>> predictor = Predictor(ModelVersion.from_model(DEC((4, 2), n_clusters=3), version=7), "cpu")
>>> clusters, confidence = predictor.predict(np.ones((5, 4), dtype=np.float32))
>>> clusters.dtype.name, confidence.shape, predictor.version
('int64', (5,), 7)
"""

from __future__ import annotations

import numpy as np
import torch

from stream_dec.model.checkpoint import ModelVersion
from stream_dec.model.dec import resolve_device


class Predictor:
    """Labels float32 batches with one model version.

    Parameters
    ----------
    version
        The model version to label with; ``version.header.version`` travels on labels.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """

    def __init__(self, version: ModelVersion, device: str = "auto") -> None:
        self.device = resolve_device(device)
        self.model = version.to_model(self.device)
        self.header = version.header
        self.version = version.header.version
        self.dim = version.header.dims[0]
        self._pinned: torch.Tensor | None = None

    @torch.inference_mode()
    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cluster id (int64) and confidence (max soft assignment, float32) per row of ``X``."""
        if len(X) == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        confidence, clusters = self.model(self._to_device(X)).max(dim=1)
        return clusters.cpu().numpy().astype(np.int64, copy=False), confidence.float().cpu().numpy()

    def _to_device(self, X: np.ndarray) -> torch.Tensor:
        host = torch.from_numpy(X)
        if self.device.type != "cuda":
            return host
        if self._pinned is None or self._pinned.shape[0] < len(X):
            self._pinned = torch.empty((max(len(X), 1024), self.dim), dtype=torch.float32).pin_memory()
        staged = self._pinned[: len(X)]
        staged.copy_(host)
        return staged.to(self.device, non_blocking=True)
