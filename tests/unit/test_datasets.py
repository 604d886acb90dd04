import json

import numpy as np
import pytest

from stream_dec.errors import DataError
from stream_dec.io import load_dataset


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_npz_with_labels(tmp_path, wordnet_small):
    X, y = wordnet_small
    np.savez(tmp_path / "d.npz", X=X.astype(np.float16), y=y.astype(np.int16))
    data = load_dataset(tmp_path / "d.npz", require_labels=True)
    assert data.X.dtype == np.float32 and data.X.flags.c_contiguous
    assert data.X.shape == (600, 384) and data.y.tolist() == y.tolist()
    assert data.n_classes == 6


def test_npy_has_no_labels(tmp_path, wordnet_small):
    np.save(tmp_path / "d.npy", wordnet_small[0][:10])
    data = load_dataset(tmp_path / "d.npy")
    assert data.X.shape == (10, 384) and data.y is None


def test_csv_json_column_layout(tmp_path, wordnet_small):
    X, y = wordnet_small[0][:5], wordnet_small[1][:5]
    rows = "".join(f'{i},"{json.dumps(x.tolist())}",{c}\n' for i, (x, c) in enumerate(zip(X, y)))
    data = load_dataset(write(tmp_path, "train_embed_label.csv", ",embedding,label\n" + rows))
    np.testing.assert_allclose(data.X, X, rtol=1e-6)
    assert data.y.tolist() == y.tolist()


def test_csv_numeric_columns_layout(tmp_path):
    data = load_dataset(write(tmp_path, "e.csv", "e0,e1,e2,label\n0.1,0.2,0.3,1\n0.4,0.5,0.6,0\n"))
    assert data.X.shape == (2, 3) and data.y.tolist() == [1, 0]


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("ragged.csv", 'embedding,label\n"[1, 2, 3]",0\n"[1, 2]",1\n', r"row 1 \(0-based; line 3 of the file\): embedding has 2 values, row 0 has 3"),
        ("short.csv", "e0,e1,label\n1,2,0\n1,2\n", r"row 1 \(0-based; line 3 of the file\): 2 fields"),
        ("nan.csv", "e0,e1,label\n1,2,0\nnan,2,1\n", r"row 1 \(0-based; line 3 of the file\): embedding holds NaN"),
        ("inf.csv", "e0,e1\n1,2\n-inf,2\n", r"row 1 \(0-based; line 3 of the file\): embedding holds NaN"),
        ("text.csv", "e0,e1,label\n1,abc,0\n", r"row 0 \(0-based; line 2 of the file\): column 'e1' is not a number"),
        ("badjson.csv", 'embedding,label\n"[1, 2",0\n', r"row 0 \(0-based; line 2 of the file\): embedding cell is not a JSON list"),
        ("badretained.csv", "e0,e1,retained\n1,2,yes\n", r"row 0 \(0-based; line 2 of the file\): 'retained' must be"),
        ("empty.csv", "", "empty file"),
        ("header_only.csv", "e0,e1,label\n", "no data rows"),
    ],
)
def test_bad_csv_files_name_the_row_and_problem(tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    with pytest.raises(DataError, match=message) as info:
        load_dataset(path)
    assert str(path) in str(info.value)


def test_nan_in_npz_names_the_row(tmp_path):
    X = np.ones((4, 3), dtype=np.float32)
    X[2, 1] = np.nan
    np.savez(tmp_path / "d.npz", X=X)
    with pytest.raises(DataError, match=r"row 2 \(0-based\): embedding holds NaN"):
        load_dataset(tmp_path / "d.npz")


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"X": np.array([["a", "b"]])}, "dtype <U1, expected a real numeric type"),
        ({"X": np.ones(5)}, "2-D matrix"),
        ({"X": np.ones((0, 4))}, "empty embedding matrix"),
        ({"Y": np.ones((2, 2))}, "no array 'X'"),
        ({"X": np.ones((3, 2)), "y": np.array([0.5, 1.0, 2.0])}, "labels have dtype float64, expected integers or strings"),
        ({"X": np.ones((3, 2)), "y": np.array([0, 1])}, r"labels have shape \(2,\), expected \(3,\)"),
    ],
)
def test_bad_npz_files(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path / "d.npz")


def test_missing_labels_when_required(tmp_path):
    np.save(tmp_path / "d.npy", np.ones((3, 2)))
    with pytest.raises(DataError, match="labels are required"):
        load_dataset(tmp_path / "d.npy", require_labels=True)


def test_unreadable_and_unknown_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "absent.npz")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(write(tmp_path, "junk.npz", "not a zip"))
    with pytest.raises(DataError, match="unsupported file type '.txt'"):
        load_dataset(write(tmp_path, "x.txt", "1,2"))


@pytest.mark.parametrize("name", ["bad.npz", "bad.npy"])
def test_a_corrupt_array_file_is_refused_without_advice_to_unpickle(tmp_path, name):
    (tmp_path / name).write_bytes(b"not an archive at all")
    with pytest.raises(DataError) as raised:
        load_dataset(tmp_path / name)
    assert "allow_pickle" not in str(raised.value) and "never loads" in str(raised.value)


def test_string_labels_are_class_names_in_every_format(tmp_path):
    X = np.arange(8, dtype=np.float32).reshape(4, 2)
    names = np.array(["noun.food", "noun.act", "noun.food", "noun.plant"])
    np.savez(tmp_path / "d.npz", X=X, y=names)
    csv_path = write(tmp_path, "d.csv", "e0,e1,label\n" + "".join(f"{a},{b},{n}\n" for (a, b), n in zip(X, names)))
    for path in (tmp_path / "d.npz", csv_path):
        data = load_dataset(path)
        assert data.classes == ("noun.act", "noun.food", "noun.plant"), path
        assert [data.classes[i] for i in data.y] == names.tolist() and data.n_classes == 3


def test_a_csv_window_says_which_rows_were_retained(tmp_path):
    data = load_dataset(write(tmp_path, "w.csv", "e0,e1,retained\n1,2,true\n3,4,False\n5,6,1\n7,8,0\n"))
    assert data.retained.tolist() == [True, False, True, False] and data.y is None
    assert data.X.shape == (4, 2)  # the column is not part of the embedding


def test_rows_are_numbered_alike_in_npz_and_csv(tmp_path):
    X = np.ones((3, 2), dtype=np.float32)
    X[1, 0] = np.inf
    np.savez(tmp_path / "d.npz", X=X)
    csv_path = write(tmp_path, "d.csv", "e0,e1\n1,1\ninf,1\n1,1\n")
    for path in (tmp_path / "d.npz", csv_path):
        with pytest.raises(DataError, match=r"row 1 \(0-based"):
            load_dataset(path)


def test_texts_come_from_an_npz_array_or_a_csv_column(tmp_path):
    npz = tmp_path / "with_texts.npz"
    np.savez(npz, X=np.ones((2, 3)), texts=np.array(["a fish", "a plant"]))
    assert load_dataset(npz).texts == ("a fish", "a plant")
    csv = tmp_path / "with_texts.csv"
    csv.write_text('embedding,text,label\n"[1, 2]",a fish,0\n"[3, 4]","a plant, green",1\n')
    data = load_dataset(csv)
    assert data.texts == ("a fish", "a plant, green") and data.X.shape == (2, 2)


def test_texts_that_are_not_one_string_per_row_are_refused(tmp_path):
    npz = tmp_path / "bad_texts.npz"
    np.savez(npz, X=np.ones((2, 3)), texts=np.array([1, 2]))
    with pytest.raises(DataError, match="'texts' must hold 2 strings"):
        load_dataset(npz)
