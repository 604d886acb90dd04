"""``grow``: open new cluster ids for dense regions of new samples that no centre serves.

When the stream brings structure the model has not seen (a topic that was rare or
absent), a strategy with K fixed can only stretch an old cluster over it, changing what
that id means. ``grow`` keeps every old centre and id as it is and appends centres:
KMeans on the window's new samples in latent space proposes ``candidates`` centres, and,
greedily, the candidate that takes the most window samples per retained sample it takes
is added, as long as the retained samples whose label changes stay within ``budget`` of
them, no old id loses the majority of its retained samples to it (the id would be
renamed, and the update rejected), and the new id takes at least ``min_size`` samples
from old ids (each candidate is checked with the labels it would really produce: a
candidate inside a region an earlier one took gains nothing from old ids). The retained
samples are split at random: the ranking looks at one half only, and the budget holds on
the other half as well as on all of them, so the agreement an update reports is less
inflated by choosing regions where the retained samples at hand happen to be few (the
held-out figures behind this choice are in benchmarks/README.md, "grow"). New ids follow
the highest existing one, and ids are never removed, so a retired id is never reused. The
encoder is unchanged.

Many-to-one ACC rises with the number of ids whatever they are, so ``evaluate`` runs
``grow-random`` beside ``grow`` as a control (not for production): the same rules, but
its candidates are the codes of new samples drawn at random instead of KMeans centroids.
What ``grow`` gains beyond it is what finding the structure adds.

Examples
--------
>>> import numpy as np
>>> from stream_dec.model import DEC
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
>>> grown = Grow(budget=0.0, candidates=3, min_size=20).propose(current, window)
>>> grown.model.n_clusters, grown.model.predict(window.X)[0][100:].tolist() == [2] * 60
(3, True)
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import KMeans

from stream_dec.continual.base import Proposal, Window
from stream_dec.model import DEC, ModelVersion
from stream_dec.model.training import encode_all


class Grow:
    """New ids for new structure; see the module docstring.

    Parameters
    ----------
    budget
        Largest share of retained samples whose label the new ids may take.
    candidates
        Most centres proposed by KMeans on the new samples.
    min_size
        Fewest samples a new id must take from old ids.
    seed
        KMeans random state (and the candidates' draw under ``"random"``).
    candidates_from
        ``"kmeans"``, or ``"random"`` for the ``grow-random`` control.
    """

    name = "grow"

    def __init__(self, budget: float = 0.01, candidates: int = 48, min_size: int = 20, seed: int = 0,
                 candidates_from: str = "kmeans") -> None:
        if candidates_from not in ("kmeans", "random"):
            raise ValueError(f"candidates_from must be 'kmeans' or 'random', not {candidates_from!r}")
        self.budget, self.candidates, self.min_size = budget, candidates, min_size
        self.seed = seed
        self.candidates_from = candidates_from

    @torch.no_grad()
    def propose(self, current: ModelVersion, window: Window) -> Proposal:
        model = current.to_model()
        codes = encode_all(model, torch.from_numpy(window.X))
        old = model.cluster_centres()
        nearest, labels = (t.numpy() for t in torch.cdist(codes, old).min(1))  # Q falls with the distance
        rows = window.agreement_rows
        new = ~window.retained if window.retained.any() else np.ones(len(codes), dtype=bool)
        count = min(self.candidates, int(new.sum()) // self.min_size)  # none smaller than min_size
        if count == 0:
            return Proposal(model)
        fresh = codes[torch.from_numpy(new)].numpy()
        if self.candidates_from == "kmeans":
            proposed = KMeans(count, n_init=2, random_state=self.seed).fit(fresh).cluster_centers_
        else:
            proposed = fresh[np.random.default_rng([self.seed, 1]).choice(len(fresh), count, replace=False)]
        candidates = model.project(torch.from_numpy(proposed).to(model.centres.dtype))
        check = rows & (np.random.default_rng(self.seed).random(len(rows)) < 0.5)
        chosen = choose_candidates(
            nearest, torch.cdist(codes, candidates).numpy(), labels, rows & ~check, check, k=model.n_clusters,
            budget=self.budget, min_size=self.min_size,
        )
        return Proposal(_with_centres(model, torch.cat([old, candidates[chosen]])))


def choose_candidates(nearest: np.ndarray, to_candidates: np.ndarray, labels: np.ndarray, choose: np.ndarray,
                      check: np.ndarray, *, k: int, budget: float, min_size: int) -> list[int]:
    """The candidate centres ``grow`` appends, in order (greedy; see the module docstring).

    ``nearest`` (n,) is each sample's distance to its nearest old centre, ``to_candidates``
    (n, C) its distance to each candidate, ``labels`` (n,) its label among the ``k`` old ids;
    ``choose`` and ``check`` (n,) mark two disjoint sets of retained samples. A candidate
    takes the samples it is nearer to than to every centre chosen so far; it qualifies if it
    takes at least ``min_size`` from old ids and, of the ``check`` samples and of all the
    retained ones, a share of at most ``budget`` then differs from ``labels``, and it takes at
    most half of any old id's retained samples (more would rename that id); the qualifying
    candidate with the most samples taken from old ids (outside ``check``) per ``choose``
    sample among them comes next. Every candidate is scored in one pass.

    >>> nearest = np.ones(6)
    >>> to_candidates = np.array([[0.5, 2, 0.5], [2, 2, 0.5], [2, 0.4, 2], [2, 0.4, 2], [0.5, 2, 0.5], [2, 2, 0.5]])
    >>> choose = np.array([True, True, False, False, False, False])
    >>> check = np.array([False, False, False, False, True, True])
    >>> choose_candidates(nearest, to_candidates, np.zeros(6, int), choose, check, k=1, budget=0.0, min_size=1)
    [1]
    >>> choose_candidates(nearest, to_candidates, np.zeros(6, int), choose, check, k=1, budget=1.0, min_size=1)
    [1, 0]

    Candidate 2 is never chosen: it would take the rest of old id 0's retained samples.
    """
    current, nearest, chosen = labels.copy(), nearest.copy(), []
    retained = choose | check
    open_ = np.ones(to_candidates.shape[1], dtype=bool)
    while open_.any():
        takes = to_candidates < nearest[:, None]  # (n, C): the samples each candidate would take
        from_old = takes & (current < k)[:, None]
        gained = from_old.sum(0)
        kept = takes & (current == labels)[:, None]  # labels a candidate would change now
        held = np.eye(k + len(chosen), dtype=np.int64)[current[retained], :k]  # retained samples of each old id
        within = (2 * (held.T @ takes[retained]) <= held.sum(0)[:, None]).all(0)  # a majority would rename the id
        for rows in (check, retained):
            within &= int((rows & (current != labels)).sum()) + (kept & rows[:, None]).sum(0) <= budget * rows.sum()
        ratio = (from_old & ~check[:, None]).sum(0) / np.maximum((from_old & choose[:, None]).sum(0), 0.5)
        ok = open_ & (gained >= min_size) & within
        if not ok.any():
            break
        best = int(np.argmax(np.where(ok, ratio, -1.0)))
        current[takes[:, best]] = k + len(chosen)
        nearest = np.minimum(nearest, to_candidates[:, best])
        chosen.append(best)
        open_[best] = False
    return chosen


def _with_centres(model: DEC, centres: torch.Tensor) -> DEC:
    """``model`` with ``centres`` (any number of them, in the latent geometry) in place of its own."""
    grown = DEC(model.dims, len(centres), alpha=model.alpha, latent_radius=model.latent_radius)
    state = model.state_dict()
    state["centres"] = centres.detach().clone()
    grown.load_state_dict(state)
    return grown.eval()
