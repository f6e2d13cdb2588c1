"""Text to segments: sentences with character offsets into the original, inside XTTS's limits."""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pysbd

from xtts_desktop.errors import UserError

logger = logging.getLogger(__name__)

# XTTS v2's languages, code -> English name, in the order a language menu shows them.
LANGUAGES: dict[str, str] = {
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "de": "German",
    "it": "Italian",
    "pt": "Portuguese",
    "pl": "Polish",
    "tr": "Turkish",
    "ru": "Russian",
    "nl": "Dutch",
    "cs": "Czech",
    "ar": "Arabic",
    "zh-cn": "Chinese",
    "hu": "Hungarian",
    "ko": "Korean",
    "ja": "Japanese",
    "hi": "Hindi",
}

# XTTS's GPT takes at most 402 text tokens; the stream keeps a little headroom.
DEFAULT_MAX_TOKENS = 400

# coqui's check_input_length uses this for a language missing from its table.
_COQUI_DEFAULT_CHAR_LIMIT = 250

_ALIASES: dict[str, str] = {"zh": "zh-cn", "zh-hans": "zh-cn", "mandarin": "zh-cn"} | {
    name.lower(): code for code, name in LANGUAGES.items()
}

# The characters str.splitlines() breaks at.
_NEWLINE_CHARS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_NEWLINE = re.compile(r"[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_NEWLINES_TO_SPACES = str.maketrans(dict.fromkeys(_NEWLINE_CHARS, " "))
_WHITESPACE = re.compile(r"\s+")
_OPTIONAL_WHITESPACE = re.compile(r"\s*")
_NON_WHITESPACE = re.compile(r"\S")
# str.isalnum() for every character: a letter or a digit (of any script) is something to say.
_SPEAKABLE_CHAR = re.compile(r"[^\W_]")

_CLOSERS = "\"'\u201d\u2019\u00bb\u203a)\\]}\u300d\u300f\u3011\u3009\u300b\uff09"
_LATIN_STOPS = ".!?\u2026\u203c\u2047\u2048\u2049"  # . ! ? … ‼ ⁇ ⁈ ⁉
# Full stops and question marks that need no space after them: CJK, Arabic, Urdu, Devanagari.
_SPACELESS_STOPS = "\u3002\uff01\uff1f\uff61\u061f\u06d4\u0964\u0965"  # 。！？｡؟۔।॥
_TERMINATOR = re.compile(f"[{_LATIN_STOPS}{_SPACELESS_STOPS}]")
# The lookbehinds make a match start only at the start of a run of punctuation, so a long run
# that is not followed by a space costs linear time, not quadratic backtracking.
_SENTENCE_END = re.compile(
    f"(?<![{_LATIN_STOPS}])[{_LATIN_STOPS}]+[{_CLOSERS}]*(?=\\s)"  # "end." then a space
    f"|[{_SPACELESS_STOPS}]+[{_CLOSERS}]*"  # "。" and the like, space or not
)
_CLAUSE_MARKS = ",;:" + _LATIN_STOPS
# ， 、 ； ： ، ؛ ﹐ ﹑ ､ and the spaceless full stops.
_SPACELESS_CLAUSE_MARKS = "\uff0c\u3001\uff1b\uff1a\u060c\u061b\ufe50\ufe51\uff64"
_SPACELESS_CLAUSE_MARKS += _SPACELESS_STOPS
_CLAUSE_END = re.compile(
    f"(?<![{_CLAUSE_MARKS}])[{_CLAUSE_MARKS}]+[{_CLOSERS}]*(?=\\s)"  # "clause," then a space
    f"|[{_SPACELESS_CLAUSE_MARKS}]+[{_CLOSERS}]*"
    "|(?<=\\S)\u2014+"  # an em dash between words
    "|\\s[-\u2013\u2014]+(?=\\s)"  # a dash with spaces around it
)

# pysbd rewrites its whole input once per abbreviation it meets (slow on "U.S. U.S. ..."),
# so it reads long paragraphs in windows of about this many characters.
_SBD_WINDOW = 1000


@dataclass(frozen=True)
class Segment:
    """One piece of text XTTS speaks in one go; ``text == original[start:end]``."""

    index: int
    text: str
    start: int
    end: int


class NothingToSay(UserError):
    """The text holds nothing XTTS could read aloud."""


def normalize_language(code: str) -> str:
    """Return XTTS's code for ``code``: any case, "zh" -> "zh-cn", "pt-BR" -> "pt", "German"."""
    key = code.strip().lower().replace("_", "-")
    if key in LANGUAGES:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    base = key.split("-")[0]
    if base in LANGUAGES:
        return base
    if base in _ALIASES:
        return _ALIASES[base]
    raise UserError(f"Unknown language '{code.strip()}'. Choose one of: {', '.join(LANGUAGES)}.")


@functools.cache
def _coqui_char_limits() -> dict[str, int]:
    # Imported here: the tokenizer module imports torch, which takes seconds.
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    return dict(VoiceBpeTokenizer().char_limits)


def char_limit(language: str) -> int:
    """The most characters XTTS reads well in one go for ``language`` (coqui's own table)."""
    base = normalize_language(language).split("-")[0]
    return _coqui_char_limits().get(base, _COQUI_DEFAULT_CHAR_LIMIT)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _needs_packages(language: str, packages: list[str]) -> UserError:
    noun = "package" if len(packages) == 1 else "packages"
    quoted = " ".join(f'"{p}"' if "[" in p else p for p in packages)
    return UserError(
        f"{language} needs the Python {noun} {' and '.join(packages)}: pip install {quoted}"
    )


@functools.cache
def _make_cutlet() -> None:
    # Cached on success only (a raised error is not cached), so a fixed install is seen at once.
    import cutlet

    cutlet.Cutlet()


def check_language_support(language: str) -> None:
    """Raise UserError naming the pip packages to install if ``language`` cannot be spoken here."""
    code = normalize_language(language)
    if code == "ja":
        missing = []
        if not _installed("cutlet"):
            missing.append("cutlet")
        if not _installed("fugashi"):
            missing.append("fugashi[unidic-lite]")
        elif not (_installed("unidic_lite") or _installed("unidic")):
            missing.append("unidic-lite")
        if missing:
            raise _needs_packages("Japanese", missing)
        try:
            _make_cutlet()
        except Exception as exc:
            logger.warning("cutlet.Cutlet() failed", exc_info=True)
            raise UserError(
                "Japanese needs a working dictionary for fugashi, and loading it failed "
                f"({exc}): pip install unidic-lite"
            ) from exc
    elif code == "zh-cn" and not _installed("pypinyin"):
        raise _needs_packages("Chinese", ["pypinyin"])
    elif code == "ko" and not _installed("ko_speech_tools"):
        raise _needs_packages("Korean", ["ko-speech-tools"])


def speakable(text: str) -> bool:
    """Whether ``text`` has a letter or a digit (of any script) in it."""
    return _SPEAKABLE_CHAR.search(text) is not None


def iter_segments(
    text: str,
    language: str,
    max_chars: int | None = None,
    token_counter: Callable[[str], int] | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> Iterator[Segment]:
    """Yield the segments of ``text`` lazily; see ``segment``. Arguments are checked at once."""
    code = normalize_language(language)
    limit = char_limit(code) if max_chars is None else max_chars
    if limit < 1:
        raise ValueError(f"max_chars must be at least 1, not {limit}")
    if token_counter is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, not {max_tokens}")
    splitter = _Splitter(text, code, limit, token_counter, max_tokens)
    return _numbered(text, splitter.spans())


def _numbered(text: str, spans: Iterator[tuple[int, int]]) -> Iterator[Segment]:
    index = 0
    for start, end in spans:
        if _SPEAKABLE_CHAR.search(text, start, end):
            yield Segment(index, text[start:end], start, end)
            index += 1


def segment(
    text: str,
    language: str,
    max_chars: int | None = None,
    token_counter: Callable[[str], int] | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> list[Segment]:
    """Split ``text`` into sentences, and sentences that are too long into smaller pieces.

    Each segment is the exact slice ``text[start:end]`` with no whitespace around it, has at
    most ``max_chars`` characters (default: ``char_limit(language)``) and, with a
    ``token_counter``, ``token_counter(segment.text) < max_tokens``. Long sentences break at
    clause punctuation, then between words, then (no spaces) between characters; nothing is
    dropped but pieces with no letter or digit, so every letter and digit is in exactly one
    segment. A paragraph break, or a line break before a line that does not start with a
    lowercase letter, ends a sentence; other line breaks are wrapped lines. Returns [] for
    text with nothing to say.
    """
    return list(iter_segments(text, language, max_chars, token_counter, max_tokens))


def require_segments(
    text: str,
    language: str,
    max_chars: int | None = None,
    token_counter: Callable[[str], int] | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> list[Segment]:
    """Like ``segment``, but raise NothingToSay (a UserError) instead of returning []."""
    segments = segment(text, language, max_chars, token_counter, max_tokens)
    if segments:
        return segments
    if not text.strip():
        raise NothingToSay("There is nothing to read: the text is empty.")
    raise NothingToSay("There is nothing to read: the text has no letters or digits.")


@functools.cache
def _sentence_segmenter(language: str) -> pysbd.Segmenter | None:
    try:
        return pysbd.Segmenter(language=language, clean=False)
    except ValueError:
        logger.debug("pysbd does not know %r; sentences are split on punctuation", language)
        return None


_warned_pysbd_failure: set[str] = set()


def _continues_cluster(text: str, i: int) -> bool:
    """Whether text[i] belongs with text[i - 1] (a combining mark, emoji modifier, joiner)."""
    char = text[i]
    point = ord(char)
    return (
        text[i - 1] == "\u200d"
        or char == "\u200d"
        or unicodedata.category(char) in ("Mn", "Mc", "Me")
        or 0x1F3FB <= point <= 0x1F3FF  # skin tones
        or 0xE0020 <= point <= 0xE007F  # emoji tag characters
    )


class _Splitter:
    """Finds the (start, end) spans of one text's segments, speakable or not, in order."""

    def __init__(
        self,
        text: str,
        language: str,
        max_chars: int,
        token_counter: Callable[[str], int] | None,
        max_tokens: int,
    ) -> None:
        self.text = text
        self.sbd_language = language.split("-")[0]
        self.max_chars = max_chars
        self.token_counter = token_counter
        self.max_tokens = max_tokens

    def spans(self) -> Iterator[tuple[int, int]]:
        for block_start, block_end in self._blocks():
            for start, end in self._sentences(block_start, block_end):
                if _SPEAKABLE_CHAR.search(self.text, start, end):
                    yield from self._fit(start, end)

    # -- paragraphs and lines

    def _blocks(self) -> Iterator[tuple[int, int]]:
        """Spans between hard line breaks: a blank line, or a break before a non-lowercase
        character. A break before a lowercase letter is a wrapped line inside a sentence."""
        text = self.text
        block_start = 0
        position = 0
        while match := _NEWLINE.search(text, position):
            run_start = match.start()
            run_end = _OPTIONAL_WHITESPACE.match(text, run_start).end()
            position = run_end
            run = text[run_start:run_end]
            breaks = sum(1 for line in run.splitlines(keepends=True) if line[-1] in _NEWLINE_CHARS)
            if breaks >= 2 or run_end == len(text) or not text[run_end].islower():
                yield block_start, run_start
                block_start = run_end
        yield block_start, len(text)

    # -- sentences

    def _strip(self, start: int, end: int) -> tuple[int, int] | None:
        first = _NON_WHITESPACE.search(self.text, start, end)
        if first is None:
            return None
        return first.start(), self._rstrip(first.start(), end)

    def _rstrip(self, start: int, end: int) -> int:
        while end > start and self.text[end - 1].isspace():
            end -= 1
        return end

    def _sentences(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        stripped = self._strip(start, end)
        if stripped is None:
            return
        start, end = stripped
        if not _TERMINATOR.search(self.text, start, end):
            yield start, end
            return
        while start < end:
            window_end = end if end - start <= _SBD_WINDOW else self._window_end(start)
            if not _SPEAKABLE_CHAR.search(self.text, start, window_end):
                start = window_end  # all punctuation: pysbd would only waste time on it
                continue
            # Inside a block every line break is a wrapped line; pysbd would end a sentence there.
            window = self.text[start:window_end].translate(_NEWLINES_TO_SPACES)
            previous = 0
            for cut in [*self._sentence_ends(window), len(window)]:
                piece = self._strip(start + previous, start + cut)
                if piece is not None:
                    yield piece
                previous = cut
            start = window_end

    def _window_end(self, start: int) -> int:
        """Where to end a pysbd window: after the last likely sentence end, else at a space."""
        limit = start + _SBD_WINDOW
        best = None
        for match in _SENTENCE_END.finditer(self.text, start + 1, limit):
            best = match.end()
        if best is None:
            for match in _WHITESPACE.finditer(self.text, start + 1, limit):
                best = match.start()
        return limit if best is None else best

    def _sentence_ends(self, window: str) -> list[int]:
        """Offsets in ``window`` where a sentence ends, in increasing order."""
        segmenter = _sentence_segmenter(self.sbd_language)
        if segmenter is not None:
            try:
                sentences = segmenter.processor(window).process()
            except Exception:
                if self.sbd_language not in _warned_pysbd_failure:
                    _warned_pysbd_failure.add(self.sbd_language)
                    logger.warning("pysbd failed; splitting on punctuation", exc_info=True)
            else:
                return _locate_ends(window, sentences)
        return _punctuation_ends(window)

    # -- fitting a sentence inside the limits

    def _fits_tokens(self, start: int, end: int) -> bool:
        if self.token_counter is None:
            return True
        return self.token_counter(self.text[start:end]) < self.max_tokens

    def _fit(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """Split the stripped span [start, end) into stripped spans that fit the limits."""
        text = self.text
        while True:
            length = end - start
            if length <= self.max_chars and self._fits_tokens(start, end):
                yield start, end
                return
            if length == 1:
                logger.warning("One character is over %d tokens: %r", self.max_tokens, text[start])
                yield start, end
                return
            most = min(self.max_chars, length - 1)
            cut = self._cut(start, end, most)
            piece_end = self._rstrip(start, cut)
            if not self._fits_tokens(start, piece_end):
                cut, piece_end = self._shrink_to_tokens(start, end, most)
            yield start, piece_end
            # The sentence ends in a non-space character, so there is one after the cut.
            start = _NON_WHITESPACE.search(text, cut, end).start()

    def _shrink_to_tokens(self, start: int, end: int, too_many: int) -> tuple[int, int]:
        """The longest cut below ``too_many`` characters whose piece fits the token limit."""
        best = None
        low, high = 1, too_many - 1
        while low <= high:
            middle = (low + high) // 2
            cut = self._cut(start, end, middle)
            piece_end = self._rstrip(start, cut)
            if self._fits_tokens(start, piece_end):
                best = cut, piece_end
                low = middle + 1
            else:
                high = middle - 1
        if best is None:
            logger.warning("One character is over %d tokens: %r", self.max_tokens, self.text[start])
            cut = self._cut(start, end, 1)
            best = cut, self._rstrip(start, cut)
        return best

    def _cut(self, start: int, end: int, most: int) -> int:
        """Where to end a piece of [start, end) of at most ``most`` characters (most < length).

        A clause boundary if there is one (but not one leaving a scrap of a few words on either
        side), else a space, else between characters; of these, the one nearest the length
        that splits the rest evenly, so a sentence just over the limit becomes two halves.
        """
        text = self.text
        length = end - start
        target = start + math.ceil(length / math.ceil(length / most))
        limit = start + most
        scrap = max(1, most // 5)
        best = None
        for match in _CLAUSE_END.finditer(text, start + 1, limit + 1):
            cut = match.end()
            if cut > limit:
                break
            if cut - start < scrap or end - cut < scrap:
                continue
            if best is None or abs(cut - target) <= abs(best - target):
                best = cut
        if best is not None:
            return best
        for match in _WHITESPACE.finditer(text, start + 1, limit + 1):
            cut = match.start()
            if best is not None and cut - target > abs(best - target):
                break
            best = cut
        if best is not None:
            return best
        cut = target
        while cut > start + 1 and _continues_cluster(text, cut):
            cut -= 1
        return target if _continues_cluster(text, cut) else cut


def _locate_ends(window: str, sentences: list[str]) -> list[int]:
    """Where pysbd's sentences end in ``window``; one pysbd changed beyond recognition gives no
    cut (its text stays with the next sentence, so nothing is lost)."""
    ends = []
    position = 0
    for sentence in sentences:
        sentence = sentence.strip()
        if not sentence:
            continue
        found = window.find(sentence, position)
        if found < 0:
            logger.debug("pysbd changed a sentence; not cutting after it: %r", sentence[:60])
            continue
        position = found + len(sentence)
        ends.append(position)
    return ends


def _punctuation_ends(window: str) -> list[int]:
    """Sentence ends by punctuation, for languages pysbd does not know. A full stop followed by
    a lowercase word ("3. května", "e.g. this") does not end a sentence."""
    ends = []
    for match in _SENTENCE_END.finditer(window):
        following = _NON_WHITESPACE.search(window, match.end())
        if following is not None and window[following.start()].islower():
            continue
        ends.append(match.end())
    return ends
