"""Reading embedding files: ``.npz``, ``.npy`` and CSV.

Every loader returns a :class:`Dataset` (a contiguous float32 matrix and optional integer
labels) or raises :class:`~stream_dec.errors.DataError` naming the file, the row and
the problem. Supported layouts:

- ``.npz`` with an array ``X`` (n x D) and, optionally, ``y`` (n labels),
  ``retained`` (n booleans: rows kept from the previous update window) and ``texts``
  (n strings: what was embedded, for the cluster catalogue);
- ``.npy`` holding the n x D matrix alone;
- ``.csv`` with a header row, one row per sample, in the layout of the original
  notebooks (``train_embed_label.csv``): the embedding either as numeric columns or as
  one column holding a JSON list, plus an optional ``label`` column, an optional
  ``retained`` column (``true``/``false`` or ``1``/``0``) and an optional ``text``
  column. A leading unnamed column (a pandas index) is ignored.

Labels may be integers or strings (class names): names are numbered in sorted order and
kept in :attr:`Dataset.classes`. Rows are numbered from 0 in every format, as arrays
are; a CSV error also gives the file line (the header is line 1).

Examples
--------
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "train_embed_label.csv")
>>> _ = open(path, "w").write('embedding,label\\n"[0.1, 0.2]",3\\n"[0.3, 0.4]",5\\n')
>>> data = load_dataset(path)
>>> data.X.shape, data.X.dtype.name, data.y.tolist()
((2, 2), 'float32', [3, 5])
>>> _ = open(path, "w").write('e0,e1,label,retained\\n1,2,noun.food,true\\n3,4,noun.act,false\\n')
>>> data = load_dataset(path)
>>> data.y.tolist(), data.classes, data.retained.tolist()
([1, 0], ('noun.act', 'noun.food'), [True, False])
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from stream_dec.errors import DataError

LABEL_COLUMN = "label"
RETAINED_COLUMN = "retained"
TEXT_COLUMN = "text"
TRUTH = {"true": True, "1": True, "false": False, "0": False}


@dataclass(frozen=True)
class Dataset:
    """Embeddings read from a file.

    Attributes
    ----------
    X
        float32 array of shape (n, D), C-contiguous, all finite.
    y
        int64 array of shape (n,) with the true labels, or ``None``.
    retained
        bool array of shape (n,) marking rows that were in the previous update window,
        or ``None`` (the file has no ``retained`` array or column).
    path
        The file it came from.
    classes
        The class names when the labels were strings (``y`` indexes them), else ``None``.
    texts
        What each row embeds (n strings), or ``None``: the cluster catalogue's terms.
    """

    X: np.ndarray
    y: np.ndarray | None
    path: Path
    retained: np.ndarray | None = None
    classes: tuple[str, ...] | None = None
    texts: tuple[str, ...] | None = None

    @property
    def dim(self) -> int:
        """Width D of each embedding."""
        return int(self.X.shape[1])

    @property
    def n_classes(self) -> int | None:
        """Number of distinct labels, or ``None`` without labels."""
        return None if self.y is None else int(np.unique(self.y).size)


def load_dataset(path: str | Path, *, require_labels: bool = False) -> Dataset:
    """Read an embedding file, choosing the loader by its extension.

    Raises :class:`DataError` for a missing, empty, ragged or non-finite file, a
    non-numeric dtype, or (with ``require_labels``) a file without labels.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    retained = texts = None
    if suffix == ".npz":
        X, y, retained, texts = _read_npz(path)
        row_name = _array_row
    elif suffix == ".npy":
        X, y = _read_npy(path), None
        row_name = _array_row
    elif suffix == ".csv":
        X, y, retained, texts = _read_csv(path)
        row_name = _csv_row
    else:
        raise DataError(f"{path}: unsupported file type '{suffix}' (expected .npz, .npy or .csv)")
    y, classes = (None, None) if y is None else _checked_labels(path, y, len(X))
    data = Dataset(
        X=_checked_matrix(path, X, row_name),
        y=y,
        path=path,
        retained=None if retained is None else _checked_mask(path, retained, len(X)),
        classes=classes,
        texts=None if texts is None else _checked_texts(path, texts, len(X)),
    )
    if require_labels and data.y is None:
        raise DataError(f"{path}: labels are required but the file has none (no 'y' array or '{LABEL_COLUMN}' column)")
    return data


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "X" not in archive.files:
                raise DataError(f"{path}: no array 'X' in the archive (found: {', '.join(archive.files) or 'nothing'})")
            X = archive["X"]
            y = archive["y"] if "y" in archive.files else None
            retained = archive["retained"] if "retained" in archive.files else None
            texts = archive["texts"] if "texts" in archive.files else None
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz archive: {_numpy_reason(exc)}") from None
    return X, y, retained, texts


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable .npy array: {_numpy_reason(exc)}") from None


def _numpy_reason(exc: Exception) -> str:
    """numpy's reason for refusing a file, without its advice to unpickle it (never safe for data files)."""
    if "pickle" in str(exc):
        return "not an array file (numpy read it as pickled data, which stream-dec never loads)"
    return str(exc)


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, list[str] | None]:
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: empty file (no header row)")
        rows = list(reader)
    if not rows:
        raise DataError(f"{path}: no data rows after the header")
    skip = {0} if header[0].strip() == "" else set()  # pandas index column
    label_at = header.index(LABEL_COLUMN) if LABEL_COLUMN in header else None
    retained_at = header.index(RETAINED_COLUMN) if RETAINED_COLUMN in header else None
    text_at = header.index(TEXT_COLUMN) if TEXT_COLUMN in header else None
    feature_at = [i for i in range(len(header)) if i not in skip and i not in (label_at, retained_at, text_at)]
    if not feature_at:
        raise DataError(f"{path}: no embedding column")
    json_column = len(feature_at) == 1 or rows[0][feature_at[0]].lstrip().startswith("[")
    vectors, labels, retained = [], [], []
    for index, row in enumerate(rows):
        where = _csv_row(index)
        if len(row) != len(header):
            raise DataError(f"{path}: {where}: {len(row)} fields, the header has {len(header)}")
        if json_column:
            vectors.append(_json_vector(path, where, row[feature_at[0]]))
        else:
            vectors.append(_numeric_fields(path, where, [(header[i], row[i]) for i in feature_at]))
        if label_at is not None:
            labels.append(_integer_label(row[label_at]))
        if retained_at is not None:
            retained.append(_truth(path, where, row[retained_at]))
    width = len(vectors[0])
    for index, vector in enumerate(vectors):
        if len(vector) != width:
            raise DataError(f"{path}: {_csv_row(index)}: embedding has {len(vector)} values, row 0 has {width} "
                            f"(ragged rows)")
    y = None
    if label_at is not None:  # integers, else class names
        y = np.asarray(labels, dtype=np.int64) if all(isinstance(v, int) for v in labels) else \
            np.asarray([row[label_at] for row in rows], dtype=str)
    return (np.asarray(vectors, dtype=np.float64), y,
            np.asarray(retained, dtype=bool) if retained_at is not None else None,
            [row[text_at] for row in rows] if text_at is not None else None)


def _json_vector(path: Path, where: str, cell: str) -> list[float]:
    try:
        value = orjson.loads(cell)
    except orjson.JSONDecodeError:
        raise DataError(f"{path}: {where}: embedding cell is not a JSON list: {cell[:40]!r}") from None
    if not isinstance(value, list) or not value:
        raise DataError(f"{path}: {where}: embedding must be a non-empty JSON list of numbers")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise DataError(f"{path}: {where}: embedding holds a non-number")
    return value


def _numeric_fields(path: Path, where: str, cells: list[tuple[str, str]]) -> list[float]:
    values = []
    for name, cell in cells:
        try:
            values.append(float(cell))
        except ValueError:
            raise DataError(f"{path}: {where}: column '{name}' is not a number: {cell[:40]!r}") from None
    return values


def _integer_label(cell: str) -> int | str:
    """The label as an integer, or the cell itself when it names a class."""
    try:
        return int(cell)
    except ValueError:
        return cell


def _truth(path: Path, where: str, cell: str) -> bool:
    try:
        return TRUTH[cell.strip().lower()]
    except KeyError:
        raise DataError(f"{path}: {where}: '{RETAINED_COLUMN}' must be true/false or 1/0, got {cell[:40]!r}") from None


def _array_row(index: int) -> str:
    return f"row {index} (0-based)"


def _csv_row(index: int) -> str:
    return f"row {index} (0-based; line {index + 2} of the file)"  # line 1 is the header


def _checked_matrix(path: Path, X: np.ndarray, row_name) -> np.ndarray:
    """Validate shape, dtype and finiteness; return a contiguous float32 copy."""
    if X.dtype.kind not in "fiu":
        raise DataError(f"{path}: embeddings have dtype {X.dtype}, expected a real numeric type")
    if X.ndim != 2:
        raise DataError(f"{path}: embeddings must be a 2-D matrix (rows x dims), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{path}: empty embedding matrix, shape {X.shape}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        row = row_name(int(np.flatnonzero(bad)[0]))
        raise DataError(f"{path}: {row}: embedding holds NaN or Inf ({int(bad.sum())} bad rows in all)")
    return X


def _checked_labels(path: Path, y: np.ndarray, n: int) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Integer labels as int64; string labels (class names) as indices into their sorted names."""
    if y.shape != (n,):
        raise DataError(f"{path}: labels have shape {y.shape}, expected ({n},) to match the embeddings")
    if y.dtype.kind in "US":
        classes, codes = np.unique(y.astype(str), return_inverse=True)
        return codes.astype(np.int64), tuple(str(c) for c in classes)
    if y.dtype.kind not in "iu":
        raise DataError(f"{path}: labels have dtype {y.dtype}, expected integers or strings (class names)")
    return y.astype(np.int64), None


def _checked_texts(path: Path, texts, n: int) -> tuple[str, ...]:
    """One string per row (numbers or bytes are not texts)."""
    texts = np.asarray(texts)
    if texts.shape != (n,) or texts.dtype.kind != "U":
        raise DataError(f"{path}: 'texts' must hold {n} strings, got an array of shape {texts.shape} "
                        f"and dtype {texts.dtype}")
    return tuple(str(t) for t in texts)


def _checked_mask(path: Path, mask: np.ndarray, n: int) -> np.ndarray:
    if mask.dtype != np.bool_ or mask.shape != (n,):
        raise DataError(f"{path}: 'retained' must be {n} booleans, got dtype {mask.dtype} shape {mask.shape}")
    return mask
