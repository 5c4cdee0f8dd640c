"""The textgen app: documents and their hold-out, the lossless tokenizer, the likelihood against
the plain sum over tokens, sampling per row and seed, a tiny run end to end (export, reload,
`predict`, its errors, LiteRT's refusal), the TFDS path on mock data, and the floors on the
default run."""

import json
import math

import keras
import numpy as np
import pytest
import sentencepiece
import tensorflow as tf

import zoo
from apps import get_app
from apps.core import DataError, RunError, resolve_config
from apps.core.litert import export_litert
from apps.core.outputs.language import generate, log_likelihoods
from apps.core.sources import texts
from tests.conftest import REPO_ROOT, call_export, cli_in_process

APP = get_app("textgen")
pytestmark = pytest.mark.xdist_group("textgen")
FORTUNE_FILE = texts.FORTUNES_DIR / "fortunes"
SAMPLE = "Tabs\tand  two spaces,\nnew lines, caf\u00e9 \u2192 \u00fcber \u2603 ok"


def test_documents_are_entries_or_paragraphs_and_a_part_is_held_out(tmp_path):
    assert texts.documents_in("one\nline\n%\ntwo\n%\n") == ["one\nline", "two"]
    assert texts.documents_in("a b\nc\n\n  \nd e\n") == ["a b\nc", "d e"]
    documents = texts.read_documents(FORTUNE_FILE)
    train, validation, test = texts.split_documents(documents, 0, "fortunes")
    distinct = texts.without_repeats(documents)
    assert len(test) == len(validation) == len(distinct) // 20
    assert sorted(train + validation + test) == sorted(distinct)
    assert texts.without_repeats(["A cat.", "a  CAT!", "A dog."]) == ["A cat.", "A dog."]
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="latin1.txt: not UTF-8 text"):
        texts.read_documents(latin1)
    with pytest.raises(DataError, match="at least 20 are needed"):
        texts.split_documents(["a", "b"], 0, "two")
    with pytest.raises(DataError, match=r"--vocabulary-size 100: this text needs at least 3\d\d "):
        texts.sentence_piece_proto(documents, 100)


def test_an_empty_file_is_one_line_in_cli_words(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    status, _, error = cli_in_process(capsys, "textgen", "train", "--data", str(empty),
                                      "--run-dir", str(tmp_path / "run"))
    assert status == 2 and "empty.txt: the file is empty" in error
    assert "Traceback" not in error


@pytest.fixture(scope="module")
def small_generator():
    documents = texts.read_documents(FORTUNE_FILE)
    proto = texts.sentence_piece_proto(documents, 400)
    keras.utils.set_random_seed(0)
    return zoo.TextGenerator(proto, sequence_length=8, network_options={
        "embedding_dim": 16, "num_heads": 2, "feed_forward_dim": 16, "num_layers": 1}), proto


def test_the_tokenizer_is_lossless_and_gives_the_training_ids(small_generator):
    model, proto = small_generator
    ids = model.tokenizer.tokenize([SAMPLE])  # eager: Python lists
    assert ids[0] == sentencepiece.SentencePieceProcessor(model_proto=proto).encode(SAMPLE)
    assert model.tokenizer.detokenize(ids)[0] == SAMPLE


def test_log_likelihood_is_the_sum_over_tokens_in_windows(small_generator):
    """Against the plain sum: run the network on `<s>` and the tokens, add the log-probability
    of each next token; a text longer than the context in windows of 8 from the last token."""
    model, _ = small_generator
    short, long = "The end.", SAMPLE
    totals, characters = log_likelihoods(model, [short, long])
    assert characters.tolist() == [len(short), len(long)]
    for text, total in zip((short, long), totals):
        ids = [2] + model.tokenizer.tokenize([text])[0]
        expected = 0.0
        for start in range(0, len(ids) - 1, 8):
            window = ids[start:start + 9]
            inputs = np.array([window[:-1] + [0] * (9 - len(window))], "int32")
            log_probabilities = tf.nn.log_softmax(model(inputs)).numpy()[0]
            expected += sum(log_probabilities[position, token]
                            for position, token in enumerate(window[1:]))
        assert total == pytest.approx(expected, rel=1e-4)


def test_each_row_samples_from_its_own_seed_and_greedy_is_the_argmax(small_generator):
    model, _ = small_generator
    prompts = ["The", "A long prompt that the context cannot hold"]

    def continued(prompts, seed, temperature=1.0, top_k=0):
        return generate(model, prompts, 3, seed, temperature, top_k)

    both, cut = continued(prompts, 5)
    assert cut.tolist() == [False, True]
    assert continued(prompts[:1], 5)[0] == both[:1]  # the same, with or without another row
    assert continued(prompts[:1], 6)[0] != both[:1]
    assert all(text.startswith(prompt) for text, prompt in zip(both, prompts))
    greedy = continued(prompts[:1], 5, temperature=0.0)[0]
    assert continued(prompts[:1], 9, top_k=1)[0] == greedy
    ids = [2] + model.tokenizer.tokenize(["The"])[0]
    token_ids = np.zeros((1, 8), "int32")
    token_ids[0, :len(ids)] = ids
    expected = keras.ops.convert_to_numpy(zoo.generate(model.network, token_ids, [len(ids)], 3))
    assert greedy[0] == model.tokenizer.detokenize([expected[0].tolist()])[0]


def test_the_lstm_baseline_generates_without_a_cache_through_the_same_methods(small_generator):
    _, proto = small_generator
    model = zoo.TextGenerator(proto, network="lstm_lm", sequence_length=8,
                              network_options={"embedding_dim": 8, "units": 8})
    assert not model.cached
    greedy, _ = generate(model, ["The"], 3, 0, temperature=0.0)
    ids = [2] + model.tokenizer.tokenize(["The"])[0]
    token_ids = np.zeros((1, 8), "int32")
    token_ids[0, :len(ids)] = ids
    expected = keras.ops.convert_to_numpy(
        zoo.generate(model.network, token_ids, [len(ids)], 3, use_cache=False))
    assert greedy[0] == model.tokenizer.detokenize([expected[0].tolist()])[0]
    totals, characters = log_likelihoods(model, ["The end."])
    assert totals[0] < 0 and characters.tolist() == [8]


def test_tiny_run_exports_what_the_model_writes_and_predict_prints_it(tiny_run, tmp_path,
                                                                      capsys):
    config, metrics = tiny_run("textgen")
    run_dir = REPO_ROOT / config.run_dir
    for report_file in ("MODEL_CARD.md", "samples.txt", "continuations.txt", "model.keras"):
        assert (run_dir / report_file).stat().st_size > 0, report_file
    assert (run_dir / "samples.txt").read_text().count("## after epoch") == metrics["epochs_trained"]
    assert "Muon with AdamW at 2x the rate" in (run_dir / "MODEL_CARD.md").read_text()
    assert metrics["bits_per_character"] > 0 and metrics["ngram_bits_per_character"] > 0
    assert 0 <= metrics["continuations_with_a_copied_run"] <= 1

    prompts = ["The cat", "Anything"]
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=False)
    expected, _ = generate(model, prompts, 6, 3)
    scored, characters = log_likelihoods(model, [SAMPLE])
    answers = call_export(metrics["export_path"], {
        "text": ("serving_default", {"prompt": prompts, "max_new_tokens": [6, 6],
                                     "temperature": [0.8, 0.8], "top_k": [40, 40],
                                     "seed": [3, 3]}),
        "score": ("log_likelihood", {"text": [SAMPLE]})}, tmp_path)
    assert [text.decode() for text in answers["text"]["text"]] == expected
    np.testing.assert_allclose(answers["score"]["log_likelihood"], scored, rtol=1e-5)
    assert answers["score"]["num_characters"].tolist() == characters.tolist() == [len(SAMPLE)]
    bits = -answers["score"]["log_likelihood"][0] / math.log(2) / len(SAMPLE)
    assert bits > 0

    capsys.readouterr()  # the run's own output
    status, out, error = cli_in_process(capsys, "textgen", "predict", "--model-dir",
                                        metrics["export_path"], "--prompt", prompts[0], "--prompt",
                                        prompts[1], "--prompt", "x " * 100, "--max-new-tokens", "6",
                                        "--seed", "3")
    assert status == 0, error
    assert [json.loads(line)["text"] for line in out.splitlines()][:2] == expected
    assert error.count("1 prompt(s) longer than the context") == 1  # the third, cut
    for bad in ("0", "32"):  # the tiny run's context is 32 tokens
        status, _, error = cli_in_process(capsys, "textgen", "predict", "--model-dir",
                                          metrics["export_path"], "--prompt", "x",
                                          "--max-new-tokens", bad)
        assert status == 2 and "--max-new-tokens" in error and "Traceback" not in error, bad

    splits = APP.load_data(config)
    with pytest.raises(RunError, match="does not convert to LiteRT built-in ops: .*Sentencepiece"):
        export_litert(APP, REPO_ROOT / metrics["export_path"], "none", splits, 4)


def test_tfds_text_loads_through_tfds():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=30):
        splits = APP.load_data(resolve_config(APP, data="tfds", vocabulary_size=300))
    assert splits.source.startswith("TFDS tiny_shakespeare (--data tfds)")
    inputs, targets = next(iter(splits.train))
    assert inputs.shape == targets.shape == (64,)
    assert inputs.numpy()[0] == zoo.TextGenerator.START_ID
    np.testing.assert_array_equal(inputs.numpy()[1:], targets.numpy()[:-1])


@pytest.mark.long
@pytest.mark.floor
def test_default_scores_held_out_fortunes_and_copies_no_more_than_they_do(sample_run):
    _, metrics = sample_run("textgen")
    assert metrics["bits_per_character"] <= 2.35, metrics  # seeds: 2.16-2.20
    # the character n-gram's on the same documents: 2.26-2.30 (seeds: 0.094-0.109 above)
    assert metrics["bits_per_character"] < metrics["ngram_bits_per_character"], metrics
    assert metrics["continuations_with_a_copied_run"] <= metrics["held_out_with_a_copied_run"]
