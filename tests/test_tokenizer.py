"""Tokenizer: byte-fallback round trips, special ids, small corpora, streaming decode."""
import warnings

import pytest

from ltg_engine.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, IncrementalDecoder, Tokenizer, train_tokenizer

CORPUS = (["the quick brown fox jumps over the lazy dog number %d" % i for i in range(300)]
          + ["今天天气很好，我们去公园散步吧。第%d天。" % i for i in range(300)])

SAMPLES = [
    "hello world",
    "今天天气很好",
    "龘靐齉 never seen in training",
    "emoji 🙂👍🏽🇯🇵 mixed 中文 and English",
    "  leading and  double spaces, tabs\tand\nnewlines  ",
    "Ünïcödé ß ø € ∑",
    "",
]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.model"
    return train_tokenizer(CORPUS, path, vocab_size=500)


def test_special_ids(tok):
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip_never_unk(tok, text):
    ids = tok.encode(text)
    assert UNK_ID not in ids
    assert tok.decode(ids) == text


def test_unseen_characters_use_byte_pieces(tok):
    ids = tok.encode("🙂")
    assert all(tok.id_to_piece(i).startswith("<0x") or tok.id_to_piece(i) == "▁" for i in ids)
    assert tok.decode(ids) == "🙂"


def test_decode_drops_specials_and_rejects_out_of_range(tok):
    ids = tok.encode("hello")
    assert tok.decode([BOS_ID] + ids + [EOS_ID, PAD_ID]) == "hello"
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([tok.vocab_size])


def test_reload_from_file(tok):
    again = Tokenizer(tok.path)
    assert again.encode(SAMPLES[3]) == tok.encode(SAMPLES[3])
    assert again.vocab_size == tok.vocab_size


def test_train_from_file_path(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS), encoding="utf-8")
    tok = train_tokenizer(corpus, tmp_path / "t.model", vocab_size=400)
    assert tok.decode(tok.encode("今天 fox")) == "今天 fox"


def test_small_corpus_warns_and_shrinks_vocab(tmp_path):
    with pytest.warns(RuntimeWarning, match="too small"):
        tok = train_tokenizer(["a b c", "d e f"], tmp_path / "t.model", vocab_size=8000)
    assert 260 <= tok.vocab_size < 8000
    assert tok.decode(tok.encode("zzz 中")) == "zzz 中"


def test_empty_corpus_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        train_tokenizer(["", "  "], tmp_path / "t.model", vocab_size=300)


def test_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        Tokenizer(tmp_path / "nope.model")


@pytest.mark.parametrize("text", SAMPLES)
def test_incremental_decoder_never_splits_characters(tok, text):
    dec = IncrementalDecoder(tok)
    pieces = [dec.push(i) for i in tok.encode(text)]
    pieces.append(dec.flush())
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def test_incremental_decoder_accepts_lists(tok):
    dec = IncrementalDecoder(tok)
    ids = tok.encode("中文 🙂 ok")
    assert dec.push(ids[:3]) + dec.push(ids[3:]) + dec.flush() == "中文 🙂 ok"
