"""``grow``: open new cluster ids for dense regions of new samples that no centre serves.

When the stream brings structure the model has not seen (a topic that was rare or
absent), a strategy with K fixed can only stretch an old cluster over it, changing what
that id means. ``grow`` keeps every old centre and id as it is and appends centres:
KMeans on the window's new samples in latent space proposes ``candidates`` centres, and,
greedily, the candidate that takes the most window samples per retained sample it takes
is added, as long as the retained samples whose label changes stay within ``budget`` of
them and the new id takes at least ``min_size`` samples from old ids (each candidate is
checked with the labels it would really produce: a candidate inside a region an earlier one
took gains nothing from old ids). New ids follow the highest existing one, and ids are
never removed, so a retired id is never reused. The encoder is unchanged.

Examples
--------
>>> import numpy as np
>>> from stream_dec.model import DEC
>>> from stream_dec.config import GrowConfig
>>> from stream_dec.continual.base import Window
>>> model = DEC((2, 2), n_clusters=2)
>>> with torch.no_grad():
...     _ = model.autoencoder.encoder[0].weight.copy_(torch.eye(2))
...     _ = model.autoencoder.encoder[0].bias.zero_()
...     _ = model.centres.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0]]))
>>> rng = np.random.default_rng(0)
>>> old = rng.normal([[0, 0]] * 50 + [[10, 0]] * 50, 0.3)
>>> new = rng.normal([[0, 10]] * 60, 0.3)  # a region no centre serves
>>> window = Window.of(np.vstack([old, new]), np.arange(160) < 100)
>>> current = ModelVersion.from_model(model, version=1)
>>> grown = Grow(GrowConfig(budget=0.0, candidates=3, min_size=20)).propose(current, window)
>>> grown.model.n_clusters, grown.model.predict(window.X)[0][100:].tolist() == [2] * 60
(3, True)
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import KMeans

from stream_dec.config import GrowConfig
from stream_dec.continual.base import Proposal, Window
from stream_dec.model import DEC, ModelVersion
from stream_dec.model.training import encode_all


class Grow:
    """New ids for new structure; see the module docstring.

    Parameters
    ----------
    config
        ``budget``, ``candidates`` and ``min_size``.
    seed
        KMeans random state.
    """

    name = "grow"

    def __init__(self, config: GrowConfig, seed: int = 0) -> None:
        self.config = config
        self.seed = seed

    @torch.no_grad()
    def propose(self, current: ModelVersion, window: Window) -> Proposal:
        model = current.to_model()
        codes = encode_all(model, torch.from_numpy(window.X))
        labels = model.log_assign(codes).argmax(1).numpy()
        rows = window.agreement_rows
        new = ~window.retained if window.retained.any() else np.ones(len(codes), dtype=bool)
        count = min(self.config.candidates, int(new.sum()) // self.config.min_size)  # none smaller than min_size
        if count == 0:
            return Proposal(model)
        kmeans = KMeans(count, n_init=2, random_state=self.seed).fit(codes[torch.from_numpy(new)].numpy())
        candidates = model.project(torch.from_numpy(kmeans.cluster_centers_).to(model.centres.dtype))
        allowed = self.config.budget * rows.sum()
        centres, remaining, k = model.cluster_centres(), list(range(count)), model.n_clusters
        while remaining:
            best, current = None, model.log_assign(codes, centres).argmax(1).numpy()
            for c in remaining:
                trial = model.log_assign(codes, torch.cat([centres, candidates[c : c + 1]])).argmax(1).numpy()
                gained = (trial == len(centres)) & (current < k)  # samples it takes from an old id
                changed = int(((trial != labels) & rows).sum())  # retained labels changed, all new ids so far
                if gained.sum() >= self.config.min_size and changed <= allowed:
                    ratio = gained.sum() / max(int((gained & rows).sum()), 0.5)
                    if best is None or ratio > best[0]:
                        best = (ratio, c)
            if best is None:
                break
            centres = torch.cat([centres, candidates[best[1] : best[1] + 1]])
            remaining.remove(best[1])
        return Proposal(_with_centres(model, centres))


def _with_centres(model: DEC, centres: torch.Tensor) -> DEC:
    """``model`` with ``centres`` (any number of them, in the latent geometry) in place of its own."""
    grown = DEC(model.dims, len(centres), alpha=model.alpha, latent_radius=model.latent_radius)
    state = model.state_dict()
    state["centres"] = centres.detach().clone()
    grown.load_state_dict(state)
    return grown.eval()
