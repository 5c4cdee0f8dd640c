"""The translate app: the number words' hold-out, the tab-separated reader's errors and skips,
the masks and the greedy decoding of both translators, a tiny run end to end (export, reload,
`predict`, LiteRT's refusal), the TFDS path on mock data, and the floor on the default run."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from apps import get_app
from apps.core import DataError, RunError, resolve_config
from apps.core.litert import export_litert
from apps.core.outputs.translation import translate
from apps.core.sources import sentence_pairs
from tests.conftest import REPO_ROOT, cli_in_process, serve_in_separate_process

APP = get_app("translate")
pytestmark = pytest.mark.xdist_group("translate")


def texts(dataset, key):
    return [inputs[key].decode() for inputs, _ in dataset.as_numpy_iterator()]


def test_number_words_hold_whole_value_classes_out_of_training():
    from num2words import num2words

    splits = sentence_pairs.number_word_splits("es", 500, 0, "test")
    train_words = set(texts(splits.train, "text")) | set(texts(splits.validation, "text"))
    test_words = texts(splits.test, "text")
    assert not train_words & set(test_words)
    held_out = [value for value in range(1_000_000)
                if value % 7 == 3 or 740_000 <= value < 760_000]
    assert not {num2words(value) for value in held_out[::97]} & train_words
    assert num2words(5) in train_words and num2words(3) in test_words
    groups = splits.context["test_groups"]
    assert len(groups) == len(test_words) == 2000 and len(set(groups)) == 2
    assert texts(splits.test, "target")[test_words.index("three")] == "tres"


def test_tab_separated_pairs_skip_bad_lines_and_refuse_unreadable_files(tmp_path):
    good = tmp_path / "pairs.tsv"
    good.write_text("Go.\tVe.\tCC-BY 2.0 (France) Attribution: tatoeba.org\nno tab here\n\n"
                    "Hi.\t\n" + "".join(f"Run {i}!\tCorre {i}!\n" for i in range(20)),
                    encoding="utf-8")
    splits = sentence_pairs.tsv_splits(good, 0, "test")
    pairs = texts(splits.train, "text") + texts(splits.test, "text")
    assert len(pairs) == 21 and "Go." in pairs and splits.facts["skipped_lines"] == 3
    assert "Ve." in texts(splits.train, "target") + texts(splits.test, "target")
    latin1 = tmp_path / "latin1.tsv"
    latin1.write_bytes("caf\xe9\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.tsv: not UTF-8 text"):
        sentence_pairs.read_tsv(latin1)
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty.tsv: no sentence pairs"):
        sentence_pairs.read_tsv(empty)


def test_a_file_without_pairs_is_one_line_in_cli_words(tmp_path, capsys):
    bad = tmp_path / "notes.tsv"
    bad.write_text("just a line\nand another\n")
    status, _, error = cli_in_process(capsys, "translate", "train", "--data", str(bad),
                                      "--run-dir", str(tmp_path / "run"))
    assert status == 2 and "notes.tsv: no sentence pairs" in error
    assert "Traceback" not in error


def _small(name, sequence_length):
    options = {"source_vocab_size": 30, "target_vocab_size": 40,
               "sequence_length": sequence_length, "embedding_dim": 16}
    if name == "transformer_seq2seq":
        options.update(num_heads=2, feed_forward_dim=16)
    else:
        options.update(units=16)
    return zoo.build(name, **options)


def _same_weights(short, long):
    """`short`'s weights in `long` (position embeddings: the first rows, the rest zero)."""
    weights = []
    for mine, theirs in zip(short.get_weights(), long.get_weights()):
        padded = np.zeros_like(theirs)
        padded[tuple(slice(0, size) for size in mine.shape)] = mine
        weights.append(padded)
    long.set_weights(weights)


@pytest.mark.parametrize("name", ["transformer_seq2seq", "lstm_seq2seq"])
def test_padding_changes_nothing_and_the_decoder_sees_no_future_token(name):
    short, long = _small(name, 8), _small(name, 12)
    _same_weights(short, long)
    source = np.array([[5, 7, 9, 0, 0, 0, 0, 0], [3, 4, 5, 6, 7, 8, 9, 10]], "int32")
    target = np.array([[2, 11, 12, 13, 0, 0, 0, 0], [2, 20, 21, 0, 0, 0, 0, 0]], "int32")
    logits = keras.ops.convert_to_numpy(short({"source_ids": source, "target_ids": target}))
    padded = keras.ops.convert_to_numpy(long({"source_ids": np.pad(source, [(0, 0), (0, 4)]),
                                              "target_ids": np.pad(target, [(0, 0), (0, 4)])}))
    real = target != 0
    np.testing.assert_allclose(padded[:, :8][real], logits[real], atol=1e-5)
    changed = target.copy()
    changed[:, 2] = 30  # a later target token: the logits before it stay
    after = keras.ops.convert_to_numpy(short({"source_ids": source, "target_ids": changed}))
    np.testing.assert_allclose(after[:, :2], logits[:, :2], atol=1e-6)
    assert np.abs(after[:, 2] - logits[:, 2]).max() > 1e-4


@pytest.mark.parametrize("name", ["transformer_seq2seq", "lstm_seq2seq"])
def test_greedy_decoding_is_the_argmax_of_one_full_pass_after_another(name):
    """The compiled loop against the plain algorithm: call the whole model on the tokens so far,
    append the most likely next, stop at the end token."""
    model = _small(name, 8)
    rng = np.random.default_rng(1)
    source = rng.integers(4, 30, (4, 8)).astype("int32")
    source[0, 3:] = 0
    decoded, attention = zoo.greedy_decode(model, source, start_id=2, end_id=3)
    for row in range(len(source)):
        tokens = [2]
        while len(tokens) <= 8:
            target = np.array([tokens + [0] * (8 - len(tokens))], "int32")
            logits = keras.ops.convert_to_numpy(model({"source_ids": source[row:row + 1],
                                                       "target_ids": target}))
            tokens.append(int(logits[0, len(tokens) - 1].argmax()))
            if tokens[-1] == 3:
                break
        words = [token for token in tokens[1:] if token != 3]
        expected = words + [0] * (8 - len(words))
        assert keras.ops.convert_to_numpy(decoded)[row].tolist() == expected[:8], row
    assert tuple(attention.shape) == (4, 8, 8)


def test_tiny_run_exports_what_the_model_translates_and_predict_prints_it(tiny_run, tmp_path,
                                                                         capsys):
    config, metrics = tiny_run("translate")
    run_dir = REPO_ROOT / config.run_dir
    for report_file in ("MODEL_CARD.md", "translations.tsv", "attention.png", "model.keras"):
        assert (run_dir / report_file).stat().st_size > 0, report_file
    assert {"exact_match", "chrf", "bleu", "test_token_accuracy"} <= set(metrics)
    assert list(metrics["exact_match_by_group"]) == ["value = 3 mod 7"]  # the first 600

    sentences = ["one hundred and twenty-three", "forty-two", "seven"]
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=False)
    expected = translate(model, sentences)[0]
    served = serve_in_separate_process(metrics["export_path"],
                                       np.array(sentences, dtype=object), tmp_path)
    assert [text.decode() for text in served["serving_default"]["translation"]] == expected

    sentence_file = tmp_path / "sentences.txt"
    sentence_file.write_text("forty-two\n\nseven\n")
    capsys.readouterr()  # the run's own output
    status, out, _ = cli_in_process(capsys, "translate", "predict", "--model-dir",
                                    metrics["export_path"], sentences[0], str(sentence_file))
    assert status == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["input"] for line in lines] == sentences
    assert [line["translation"] for line in lines] == expected

    splits = APP.load_data(config)
    with pytest.raises(RunError, match="does not convert to LiteRT built-in ops: .*String"):
        export_litert(APP, REPO_ROOT / metrics["export_path"], "none", splits, 4)


def test_tfds_translation_pairs_load_through_tfds():
    """TFDS's supervised (source, target) pairs become the app's examples, each split of its own
    (the runner trains on them as on any other: the tiny run)."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        splits = APP.load_data(resolve_config(APP, data="tfds"))
    assert splits.source.startswith("TFDS ted_hrlr_translate/pt_to_en (--data tfds)")
    for split in (splits.train, splits.validation, splits.test):
        inputs, target = next(iter(split))
        assert inputs["text"].dtype == inputs["target"].dtype == tf.string
        assert inputs["target"].numpy() == target.numpy()
        assert sum(1 for _ in split) == 12


@pytest.mark.long
@pytest.mark.floor
def test_default_translates_held_out_values_and_beats_the_lstm(sample_run):
    _, metrics = sample_run("translate")
    assert metrics["sequence_length"] == 10  # the longest number words are 9 words
    assert len(metrics["exact_match_by_group"]) == 2
    assert all(value >= 0.97 for value in metrics["exact_match_by_group"].values()), metrics
    _, baseline = sample_run("translate", model="lstm_seq2seq")
    assert metrics["exact_match"] >= baseline["exact_match"], (metrics, baseline)
