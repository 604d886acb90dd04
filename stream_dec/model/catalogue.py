"""What each cluster of a model version is: the cluster catalogue.

:func:`build_catalogue` describes every cluster id of a model on a set of samples (the
updater's window): its size and share, the mean confidence of its members, how far its
centre moved since the parent version (relative to the typical gap between neighbouring
centres, as the promotion gate measures drift), the ids of the members nearest to its
centre (exemplars), and, when the samples carry text, its top terms and a few example
texts. An id the parent did not have is marked ``new``; the parent's terms are kept
beside the new ones so that a reader sees what changed.

Top terms are class-based TF-IDF (c-TF-IDF, as BERTopic computes it): the texts of each
cluster are joined into one document, counted with scikit-learn's ``CountVectorizer``
(English stop words removed), and term ``t`` of cluster ``c`` scores
``tf(t, c) * log(1 + A / f(t))``, with ``tf`` the term's share of the cluster's words,
``f(t)`` its count over all clusters and ``A`` the mean number of words per cluster: a
term frequent in one cluster and rare elsewhere ranks first.

Examples
--------
>>> texts = ["a small fish of warm seas", "a freshwater fish", "a flowering plant",
...          "a plant of the daisy family"]
>>> top_terms(texts, np.array([0, 0, 1, 1]), 2, n_terms=1)
[['fish'], ['plant']]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import orjson
import torch

from stream_dec.model.checkpoint import ModelVersion
from stream_dec.model.dec import DEC
from stream_dec.model.metrics import neighbour_gap

CATALOGUE_FILE = "catalogue.json"
"""Beside ``model.json`` in a model directory written by ``stream-dec train`` or ``update``."""
MAX_TEXT_CHARS = 200
"""Example texts are cut to this many characters (a catalogue travels beside the version)."""


@dataclass(frozen=True)
class ClusterCard:
    """One cluster id of a version (see the module docstring).

    ``drift`` is ``None`` for an id that is new in this version (or when there is no
    parent); ``previous_terms`` is ``None`` when the parent's catalogue is unknown.
    """

    cluster: int
    size: int
    share: float
    confidence: float
    drift: float | None
    exemplars: list[str]
    terms: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    new: bool = False
    previous_terms: list[str] | None = None

    @property
    def changed_terms(self) -> list[str]:
        """Terms that are new to this id since the parent version (empty when unknown)."""
        if self.previous_terms is None:
            return []
        return [t for t in self.terms if t not in self.previous_terms]


@dataclass(frozen=True)
class Catalogue:
    """Every cluster id of one model version, described on ``samples`` samples."""

    version: int
    parent: int | None
    samples: int
    clusters: list[ClusterCard]

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes | str) -> Catalogue:
        """Inverse of :meth:`to_json`; raises ``ValueError`` (or ``orjson.JSONDecodeError``) on anything else."""
        document = orjson.loads(data)
        if not isinstance(document, dict) or not isinstance(document.get("clusters"), list):
            raise ValueError("not a stream-dec cluster catalogue")
        try:
            cards = [ClusterCard(**card) for card in document["clusters"]]
            return cls(int(document["version"]), document["parent"], int(document["samples"]), cards)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a stream-dec cluster catalogue ({exc})") from None

    def text(self) -> str:
        """The catalogue as lines a person reads (``stream-dec inspect``)."""
        parent = f", parent {self.parent}" if self.parent is not None else ""
        lines = [f"version {self.version}{parent}: {len(self.clusters)} clusters on {self.samples} samples"]
        for c in self.clusters:
            mark = " NEW" if c.new else ""
            drift = "" if c.drift is None else f" | drift {c.drift:.3f}"
            lines.append(f"cluster {c.cluster}{mark} | {c.size} samples ({c.share:.1%}) | "
                         f"confidence {c.confidence:.2f}{drift}")
            if c.terms:
                changed = c.changed_terms
                lines.append("  terms: " + ", ".join(f"{t}*" if t in changed else t for t in c.terms)
                             + ("   (* new since the parent)" if changed else ""))
            for text in c.texts:
                lines.append(f"  - {text}")
            lines.append("  exemplars: " + ", ".join(c.exemplars))
        return "\n".join(lines)


def build_catalogue(model: DEC, X: np.ndarray, ids: list[str], texts: list[str | None] | None = None, *,
                    version: int, parent: ModelVersion | None = None, previous: Catalogue | None = None,
                    n_exemplars: int = 5, n_terms: int = 8, n_texts: int = 3) -> Catalogue:
    """Describe every cluster id of ``model`` on the samples ``X`` (ids ``ids``, optional ``texts``).

    ``parent`` (the version ``model`` updates) gives each id's drift from the parent's
    centre and marks ids beyond the parent's K as new; ``previous`` (the parent's
    catalogue) supplies ``previous_terms``. Exemplars and example texts are the members
    nearest to the centre.
    """
    if len(ids) != len(X) or (texts is not None and len(texts) != len(X)):
        raise ValueError(f"{len(X)} samples, {len(ids)} ids, {len(texts) if texts is not None else 0} texts")
    k = model.n_clusters
    with torch.inference_mode():
        x = model.checked_input(X).to(model.centres.device)
        z = torch.cat([model.encode(x[i:i + 8192]) for i in range(0, len(x), 8192)])
        confidence, labels = model.log_assign(z).exp().max(dim=1)
        centres = model.cluster_centres()
        distance = torch.linalg.vector_norm(z - centres[labels], dim=1)
    labels, confidence, distance = labels.cpu().numpy(), confidence.cpu().numpy(), distance.cpu().numpy()
    centres = centres.detach().cpu().numpy().astype(np.float64)
    parent_centres = parent.to_model().cluster_centres().detach().numpy() if parent is not None else None
    drift = _drift(centres, parent_centres)
    has_text = texts is not None and any(texts)
    terms = top_terms([t or "" for t in texts], labels, k, n_terms) if has_text else [[] for _ in range(k)]
    earlier = {c.cluster: c.terms for c in previous.clusters} if previous is not None else {}
    old_k = len(parent_centres) if parent_centres is not None else k
    cards = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        nearest = members[np.argsort(distance[members], kind="stable")]
        examples = [texts[i][:MAX_TEXT_CHARS] for i in nearest if texts[i]][:n_texts] if has_text else []
        cards.append(ClusterCard(
            cluster=c, size=int(len(members)), share=float(len(members) / max(len(X), 1)),
            confidence=float(confidence[members].mean()) if len(members) else 0.0,
            drift=drift[c], exemplars=[ids[i] for i in nearest[:n_exemplars]], terms=terms[c], texts=examples,
            new=parent_centres is not None and c >= old_k,
            previous_terms=earlier.get(c) if previous is not None else None))
    return Catalogue(version=version, parent=parent.header.version if parent is not None else None,
                     samples=int(len(X)), clusters=cards)


def top_terms(texts: list[str], labels: np.ndarray, k: int, n_terms: int = 8) -> list[list[str]]:
    """The ``n_terms`` highest c-TF-IDF terms of each of ``k`` clusters (see the module docstring)."""
    from sklearn.feature_extraction.text import CountVectorizer

    documents = [" ".join(t for t, label in zip(texts, labels) if label == c) for c in range(k)]
    if not any(document.strip() for document in documents):
        return [[] for _ in range(k)]
    vectorizer = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[^\W\d_][^\W\d_]+\b")
    try:
        counts = vectorizer.fit_transform(documents).toarray().astype(np.float64)
    except ValueError:  # nothing but stop words
        return [[] for _ in range(k)]
    words = counts.sum(axis=1, keepdims=True)
    tf = np.divide(counts, words, out=np.zeros_like(counts), where=words > 0)
    idf = np.log1p(words.mean() / counts.sum(axis=0))
    scores = tf * idf
    vocabulary = vectorizer.get_feature_names_out()
    result = []
    for row in scores:
        order = np.lexsort((vocabulary, -row))  # highest score first, ties alphabetical
        result.append([str(vocabulary[i]) for i in order[:n_terms] if row[i] > 0])
    return result


def _drift(centres: np.ndarray, parent_centres: np.ndarray | None) -> list[float | None]:
    """Per id: distance its centre moved since the parent, over the parent's neighbour gap."""
    if parent_centres is None:
        return [None] * len(centres)
    old = np.asarray(parent_centres, dtype=np.float64)
    gap = neighbour_gap(old) if len(old) > 1 else 1.0
    moved = np.linalg.norm(centres[: len(old)] - old, axis=1) / (gap or 1.0)
    return [float(m) for m in moved] + [None] * (len(centres) - len(old))
