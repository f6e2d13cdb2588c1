"""Tests for engine.text: sentences, offsets into the original, XTTS's limits, languages."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xtts_desktop.engine import text as text_module
from xtts_desktop.engine.text import (
    LANGUAGES,
    NothingToSay,
    Segment,
    char_limit,
    check_language_support,
    iter_segments,
    normalize_language,
    require_segments,
    segment,
    speakable,
)
from xtts_desktop.errors import UserError

ENGLISH = (
    "Dr. Smith arrived at 5 p.m. on Jan. 3. He was late, again! "
    '"Why?" she asked. Mr. Jones, who had waited since 4:30, said nothing.'
)

SAMPLES = {
    "en": ENGLISH,
    "fr": "M. Dupont est arrivé à 17 h. Il faisait beau ! Qu'en pensez-vous ?",
    "de": "Dr. Müller kam am 3. Januar an. Es regnete den ganzen Tag. Warum nur?",
    "ru": "Доктор Иванов приехал вечером. Было холодно! Почему он опоздал?",
    "zh-cn": "今天天气很好。我们去公园吧！你觉得怎么样？",
    "ja": "今日は良い天気です。公園に行きましょう！どう思いますか？",
    "ar": "ذهبت إلى السوق. اشتريت بعض الفاكهة. ثم عدت إلى المنزل.",
    "hi": "नमस्ते। आप कैसे हैं? मैं ठीक हूँ।",
    "es": "El Sr. García llegó tarde. ¿Por qué? Nadie lo sabe.",
    "it": "Il sig. Rossi è arrivato. Pioveva molto! Perché?",
    "pt": "O Sr. Silva chegou tarde. Por quê? Ninguém sabe.",
    "pl": "Pan Kowalski przyszedł późno. Dlaczego? Nikt nie wie.",
    "tr": "Ahmet Bey geç geldi. Neden? Kimse bilmiyor.",
    "nl": "Meneer Jansen kwam te laat. Waarom? Niemand weet het.",
    "cs": "Pan Novák přišel 3. května pozdě. Proč? Nikdo neví.",
    "hu": "Kovács úr későn érkezett. Miért? Senki sem tudja.",
    "ko": "오늘은 날씨가 좋습니다. 공원에 갈까요? 좋아요!",
}


def check_segments(original: str, segments: list[Segment], max_chars: int) -> None:
    """The invariants every segmentation keeps, whatever the text."""
    assert [s.index for s in segments] == list(range(len(segments)))
    covered = bytearray(len(original))
    previous_end = 0
    for s in segments:
        assert original[s.start : s.end] == s.text
        assert s.text, "empty segment"
        assert s.text == s.text.strip(), "whitespace around a segment"
        assert len(s.text) <= max_chars
        assert speakable(s.text)
        assert s.start >= previous_end, "segments overlap or are out of order"
        previous_end = s.end
        covered[s.start : s.end] = b"\x01" * (s.end - s.start)
    lost = [i for i, char in enumerate(original) if char.isalnum() and not covered[i]]
    assert not lost, f"letters or digits in no segment: {[original[i] for i in lost[:10]]}"


def words(text: str) -> list[str]:
    return text.split()


# -- offsets and sentences


def test_english_sentences_keep_abbreviations_together():
    segments = segment(ENGLISH, "en")
    assert [s.text for s in segments] == [
        "Dr. Smith arrived at 5 p.m. on Jan. 3.",
        "He was late, again!",
        '"Why?" she asked.',
        "Mr. Jones, who had waited since 4:30, said nothing.",
    ]
    check_segments(ENGLISH, segments, char_limit("en"))


@pytest.mark.parametrize("language", ["fr", "de", "ru", "zh-cn", "ja", "ar", "hi"])
def test_sentences_map_back_in_other_languages(language):
    sample = SAMPLES[language]
    segments = segment(sample, language)
    check_segments(sample, segments, char_limit(language))
    assert len(segments) == 3


def test_offsets_survive_leading_space_control_and_zero_width_characters():
    sample = "  \t\u200bFirst\x00 one.\u200d  Second\u200e one?\x1b\r\n\r\nThird\ufeff!  "
    segments = segment(sample, "en")
    check_segments(sample, segments, char_limit("en"))
    assert len(segments) == 3
    assert segments[0].text.endswith("one.")


def test_wrapped_lines_stay_in_one_sentence_but_headings_and_paragraphs_do_not():
    sample = "Chapter One\nIt was the best of times, it was\nthe worst of times.\n\nnext paragraph"
    assert [s.text for s in segment(sample, "en")] == [
        "Chapter One",
        "It was the best of times, it was\nthe worst of times.",
        "next paragraph",
    ]


def test_punctuation_fallback_keeps_ordinals_and_splits_sentences():
    # pysbd has no Czech: a full stop before a lowercase word is not a sentence end.
    segments = segment(SAMPLES["cs"], "cs")
    assert [s.text for s in segments] == [
        "Pan Novák přišel 3. května pozdě.",
        "Proč?",
        "Nikdo neví.",
    ]


# -- limits


def test_long_sentence_without_punctuation_splits_between_words():
    sample = " ".join(f"word{i}" for i in range(2000))
    limit = char_limit("en")
    segments = segment(sample, "en")
    check_segments(sample, segments, limit)
    assert len(segments) > 1
    assert " ".join(s.text for s in segments) == sample  # no word cut, nothing lost
    for s in segments:
        assert all(re.fullmatch(r"word\d+", w) for w in words(s.text))


def test_sentence_just_over_the_limit_splits_in_two_even_halves():
    sample = " ".join(["word"] * 60) + "."  # 300 characters
    segments = segment(sample, "en", max_chars=250)
    assert len(segments) == 2
    assert abs(len(segments[0].text) - len(segments[1].text)) < 10


def test_long_sentence_splits_at_clauses_first():
    clause = "and the rain kept falling on the roofs of the town"
    sample = ", ".join([clause] * 12) + "."
    segments = segment(sample, "en")
    check_segments(sample, segments, char_limit("en"))
    assert len(segments) > 1
    assert all(s.text.endswith((",", ".")) for s in segments)


def test_giant_word_is_hard_split_without_loss():
    sample = "".join(chr(ord("a") + i % 26) for i in range(5000))
    segments = segment(sample, "en")
    check_segments(sample, segments, char_limit("en"))
    assert "".join(s.text for s in segments) == sample


def test_hard_split_keeps_combining_marks_with_their_letter():
    sample = "e\u0301" * 300  # é as e + combining acute accent
    segments = segment(sample, "en", max_chars=51)
    check_segments(sample, segments, 51)
    assert "".join(s.text for s in segments) == sample
    assert all(s.text[0] == "e" for s in segments)


@pytest.mark.parametrize(("language", "limit"), [("zh-cn", 82), ("ja", 71)])
def test_cjk_text_without_spaces_respects_the_char_limit(language, limit):
    assert char_limit(language) == limit
    unit = (
        "这是一个很长的句子没有任何标点符号"
        if language == "zh-cn"
        else "これはとても長い文で句読点がありません"
    )
    sample = unit * 40
    segments = segment(sample, language)
    check_segments(sample, segments, limit)
    assert "".join(s.text for s in segments) == sample


def test_cjk_long_sentence_splits_at_cjk_commas():
    sample = "，".join(["我们今天一起去公园散步然后回家吃饭"] * 10) + "。"
    segments = segment(sample, "zh-cn")
    check_segments(sample, segments, 82)
    assert all(s.text.endswith(("，", "。")) for s in segments)


def test_token_counter_keeps_every_segment_under_max_tokens():
    def two_per_char(piece: str) -> int:
        return 2 * len(piece)

    sample = ENGLISH + " " + " ".join(f"word{i}" for i in range(300)) + " " + "x" * 400
    segments = segment(sample, "en", token_counter=two_per_char, max_tokens=100)
    check_segments(sample, segments, char_limit("en"))
    assert all(two_per_char(s.text) < 100 for s in segments)


@pytest.fixture(scope="module")
def coqui_tokenizer(tmp_path_factory):
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    from xtts_desktop.engine.random_model import build_vocab

    vocab = tmp_path_factory.mktemp("vocab") / "vocab.json"
    build_vocab(vocab)
    return VoiceBpeTokenizer(vocab_file=vocab)


def test_coqui_tokenizer_plugs_in_as_token_counter(coqui_tokenizer):
    # Numbers expand to words before tokenising, so tokens outnumber characters here.
    def count(piece: str) -> int:
        return len(coqui_tokenizer.encode(piece.strip().lower(), "en"))

    sample = " ".join(str(1_000_000 + 7 * i) for i in range(80)) + "."
    segments = segment(sample, "en", token_counter=count, max_tokens=120)
    check_segments(sample, segments, char_limit("en"))
    assert len(segments) > 1
    assert all(count(s.text) < 120 for s in segments)


def test_bad_limits_are_programming_errors():
    with pytest.raises(ValueError):
        segment("Hello.", "en", max_chars=0)
    with pytest.raises(ValueError):
        segment("Hello.", "en", token_counter=len, max_tokens=0)


# -- languages


def test_languages_are_xtts_seventeen_in_display_order():
    assert list(LANGUAGES) == [
        "en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru",
        "nl", "cs", "ar", "zh-cn", "hu", "ko", "ja", "hi",
    ]  # fmt: skip
    assert LANGUAGES["zh-cn"] == "Chinese"


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_every_language_is_accepted_supported_and_segmented(language):
    assert normalize_language(language) == language
    assert normalize_language(language.upper()) == language
    check_language_support(language)
    limit = char_limit(language)
    assert 50 <= limit <= 300
    segments = segment(SAMPLES[language], language)
    check_segments(SAMPLES[language], segments, limit)
    assert len(segments) >= 2


@pytest.mark.parametrize("code", ["zh", "ZH", "zh-CN", "Zh_Cn", " zh ", "Chinese"])
def test_chinese_aliases(code):
    assert normalize_language(code) == "zh-cn"


@pytest.mark.parametrize(("code", "expected"), [("EN", "en"), ("pt-BR", "pt"), ("German", "de")])
def test_regional_codes_and_names(code, expected):
    assert normalize_language(code) == expected


def test_unknown_language_lists_the_choices():
    with pytest.raises(UserError) as caught:
        normalize_language("xx")
    message = str(caught.value)
    assert message.startswith("Unknown language 'xx'. Choose one of: en, es, fr,")
    assert "zh-cn" in message and message.endswith("hi.")
    with pytest.raises(UserError):
        segment("Hello.", "klingon")


def test_missing_packages_are_named_with_the_pip_command(monkeypatch):
    monkeypatch.setattr(text_module, "_installed", lambda module: False)
    with pytest.raises(UserError, match=r'^Japanese needs .*cutlet.*pip install cutlet "fugashi'):
        check_language_support("ja")
    with pytest.raises(UserError, match="^Chinese needs the Python package pypinyin: pip install"):
        check_language_support("zh")
    with pytest.raises(UserError, match="pip install ko-speech-tools$"):
        check_language_support("ko")
    check_language_support("en")  # needs nothing extra


def test_missing_japanese_dictionary_is_a_user_error(monkeypatch):
    monkeypatch.setattr(
        text_module, "_installed", lambda module: module not in ("unidic_lite", "unidic")
    )
    with pytest.raises(UserError, match="^Japanese needs the Python package unidic-lite: pip"):
        check_language_support("ja")


def test_broken_japanese_dictionary_is_a_user_error(monkeypatch):
    def broken() -> None:
        raise RuntimeError("Failed initializing MeCab")

    monkeypatch.setattr(text_module, "_make_cutlet", broken)
    with pytest.raises(UserError, match="^Japanese needs a working dictionary.*unidic-lite$"):
        check_language_support("ja")


# -- nothing to say


@pytest.mark.parametrize("sample", ["!!! ... 🙂", "\u200b", "—", "🙂🙂🙂 ?!"])
def test_unspeakable_text_has_nothing_to_read(sample):
    assert not speakable(sample)
    assert segment(sample, "en") == []
    with pytest.raises(NothingToSay) as caught:
        require_segments(sample, "en")
    assert isinstance(caught.value, UserError)
    assert str(caught.value) == "There is nothing to read: the text has no letters or digits."


@pytest.mark.parametrize("sample", ["", "   \n\t "])
def test_empty_text_has_nothing_to_read(sample):
    with pytest.raises(UserError, match=r"^There is nothing to read: the text is empty\.$"):
        require_segments(sample, "en")


def test_unspeakable_sentences_are_dropped_and_indices_stay_consecutive():
    sample = "Hello there. 🙂🙂. ... Goodbye now."
    segments = require_segments(sample, "en")
    assert [s.text for s in segments] == ["Hello there.", "Goodbye now."]
    assert [s.index for s in segments] == [0, 1]


def test_iter_segments_is_lazy_and_checks_arguments_at_once():
    with pytest.raises(UserError):
        iter_segments("Hello.", "xx")
    stream = iter_segments("One. Two. Three.", "en")
    assert next(stream).text == "One."


# -- large inputs


@pytest.mark.timeout(60)
def test_one_megabyte_without_punctuation():
    sample = ("lorem ipsum dolor sit amet consectetur " * 30_000)[:1_000_000]
    segments = segment(sample, "en")
    check_segments(sample, segments, char_limit("en"))
    assert " ".join(s.text for s in segments) == " ".join(sample.split())


@pytest.mark.timeout(60)
def test_one_megabyte_of_a_single_character_without_spaces():
    sample = "あ" * 1_000_000
    segments = segment(sample, "ja")
    assert len(segments) == -(-1_000_000 // 71)
    assert sum(len(s.text) for s in segments) == len(sample)


# -- properties

EMOJI = ["🙂", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "❤\ufe0f", "😀😀😀"]
CONTROL = ["\x00", "\x07", "\x1b", "\x7f", "\u200b", "\u200d", "\u200e", "\u202e", "\ufeff"]
LINES = ["\n", "\r\n", "\n\n", "\u2028", "\x0b", "\x85", "\t", " ", "   "]
PUNCTUATION = list(".!?,;:—–-…。！？，、؟।\"'()«»") + ["...", "Dr.", "p.m.", "e.g.", "U.S.", "3."]
SCRIPTS = "abcXYZ019 مرحبا بكم שלום 今天天气很好 日本語のテキスト 한국어 नमस्ते Привет é\u0301"

fragments = st.one_of(
    st.sampled_from(EMOJI + CONTROL + LINES + PUNCTUATION),
    st.text(alphabet=SCRIPTS, min_size=1, max_size=20),
)
mixed_texts = st.lists(fragments, max_size=80).map("".join)
word_runs = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzé", min_size=1, max_size=15),
    min_size=20,
    max_size=400,
).map(" ".join)
cjk_runs = st.text(
    alphabet="今天天气很好我们去公园吧日本語のテキストです한국어", min_size=50, max_size=800
)
giant_words = st.integers(min_value=1, max_value=3000).map(lambda n: "ab1" * n)
any_text = st.one_of(st.text(), mixed_texts, word_runs, cjk_runs, giant_words)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sample=any_text, language=st.sampled_from(list(LANGUAGES)))
def test_property_default_limits(sample, language):
    check_segments(sample, segment(sample, language), char_limit(language))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sample=any_text,
    language=st.sampled_from(list(LANGUAGES)),
    max_chars=st.integers(min_value=1, max_value=120),
)
def test_property_small_limits(sample, language, max_chars):
    check_segments(sample, segment(sample, language, max_chars=max_chars), max_chars)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sample=any_text,
    language=st.sampled_from(["en", "de", "ja", "zh-cn", "ko", "tr"]),
    max_tokens=st.integers(min_value=8, max_value=200),
)
def test_property_token_limit(sample, language, max_tokens):
    # Uneven costs (digits count triple), so characters and tokens disagree.
    def count(piece: str) -> int:
        return 1 + sum(3 if char.isdigit() else 1 for char in piece)

    segments = segment(sample, language, token_counter=count, max_tokens=max_tokens)
    check_segments(sample, segments, char_limit(language))
    assert all(count(s.text) < max_tokens for s in segments)
