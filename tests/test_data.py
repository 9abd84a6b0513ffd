"""Data: errors name file and line; text cutting; batching."""
import json

import pytest

from ltg_engine.training.data import (DataError, collate, cut_document, load_examples, make_batches,
                                      read_documents, read_jsonl_pairs, split_valid)


class CharTokenizer:
    """Stand-in tokenizer: one id per character (ids >= 4)."""

    def encode(self, text):
        return [4 + ord(c) % 200 for c in text]


def write(path, text):
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(path)


@pytest.mark.parametrize("content, line, message", [
    ('{"source": "a", "target": "b"}\n{"source": "a", "target": \n', 2, "invalid JSON"),
    ('{"source": "a", "target": "b"}\n\n{"source": "a"}\n', 3, "missing key 'target'"),
    ('{"source": 5, "target": "b"}\n', 1, "'source' must be a string"),
    ('{"source": "a", "target": ["b"]}\n', 1, "'target' must be a string"),
    ('["a", "b"]\n', 1, "expected a JSON object"),
    ('{"source": "", "target": "b"}\n', 1, "'source' is empty"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, content, line, message):
    path = write(tmp_path / "d.jsonl", content)
    with pytest.raises(DataError, match=message) as err:
        read_jsonl_pairs(path)
    assert f"{path}:{line}:" in str(err.value)


def test_non_utf8_names_line(tmp_path):
    path = write(tmp_path / "d.jsonl", b'{"source": "a", "target": "b"}\n{"source": "\xff\xfe", "target": "b"}\n')
    with pytest.raises(DataError, match="not valid UTF-8") as err:
        read_jsonl_pairs(path)
    assert f"{path}:2:" in str(err.value)
    txt = write(tmp_path / "d.txt", b"ok\nbad \xc3\x28 byte\n")
    with pytest.raises(DataError, match=f"{txt}:2: not valid UTF-8"):
        read_documents(txt)


@pytest.mark.parametrize("name, content", [("e.jsonl", ""), ("e.txt", ""), ("b.txt", "\n  \n\n")])
def test_empty_file(tmp_path, name, content):
    path = write(tmp_path / name, content)
    with pytest.raises(DataError, match="empty") as err:
        load_examples(path, CharTokenizer(), 8, 4)
    assert path in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_examples(str(tmp_path / "nope.txt"), CharTokenizer(), 8, 4)


def test_data_error_is_value_error():
    assert issubclass(DataError, ValueError)


def test_documents_one_per_line_or_blank_separated(tmp_path):
    assert read_documents(write(tmp_path / "a.txt", "one\ntwo\nthree\n")) == ["one", "two", "three"]
    assert read_documents(write(tmp_path / "b.txt", "a1\na2\n\n\nb1\n")) == ["a1\na2", "b1"]


def test_cut_document_context_and_continuation():
    ids = list(range(10, 30))  # 20 tokens
    pairs = cut_document(ids, context_len=6, continuation_len=5)
    assert [t for _, t in pairs] == [ids[5:10], ids[10:15], ids[15:20]]
    assert [s for s, _ in pairs] == [ids[0:5], ids[4:10], ids[9:15]]
    assert cut_document([1], 4, 4) == []
    assert cut_document([7, 8, 9], 4, 8) == [([7], [8, 9])]  # shorter than one continuation


def test_jsonl_truncation_keeps_end_of_source(tmp_path):
    path = write(tmp_path / "d.jsonl", json.dumps({"source": "abcdefgh", "target": "xyz123"}) + "\n")
    with pytest.warns(RuntimeWarning, match="truncated"):
        [(src, tgt)] = load_examples(path, CharTokenizer(), context_len=3, continuation_len=2)
    enc = CharTokenizer().encode
    assert src == enc("fgh") and tgt == enc("xy")


def test_collate_pads_and_adds_bos_eos():
    batch = collate([([5, 6, 7], [8]), ([9], [10, 11])])
    assert batch.src.tolist() == [[5, 6, 7], [9, 0, 0]]
    assert batch.src_len.tolist() == [3, 1]
    assert batch.tgt_in.tolist() == [[2, 8, 0], [2, 10, 11]]
    assert batch.tgt_out.tolist() == [[8, 3, 0], [10, 11, 3]]
    assert batch.n_target_tokens == 5


def test_make_batches_buckets_by_length_and_is_deterministic():
    examples = [([4] * n, [5] * (n % 7 + 1)) for n in range(1, 101)]
    batches = make_batches(examples, batch_size=10, seed=3)
    assert sorted(len(ex[0]) for b in batches for ex in b) == list(range(1, 101))
    assert all(max(len(s) for s, _ in b) - min(len(s) for s, _ in b) <= 10 for b in batches)
    assert batches == make_batches(examples, batch_size=10, seed=3)
    capped = make_batches(examples, batch_size=100, max_tokens=200, seed=0)
    assert all(len(b) == 1 or max(len(s) + len(t) + 1 for s, t in b) * len(b) <= 200 for b in capped)


def test_split_valid_holds_out_a_fraction():
    examples = [([i + 4], [i + 5]) for i in range(100)]
    train, valid = split_valid(examples, 0.05, seed=0)
    assert len(valid) == 5 and len(train) == 95
    assert sorted(train + valid) == sorted(examples)
