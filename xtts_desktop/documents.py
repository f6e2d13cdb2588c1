"""Documents to speakable text: plain text, Markdown, HTML and EPUB files, read safely."""

from __future__ import annotations

import codecs
import html
import logging
import lzma
import os
import posixpath
import re
import stat
import struct
import time
import zipfile
import zlib
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote
from xml.etree import ElementTree
from xml.parsers import expat

from xtts_desktop.errors import UserError

logger = logging.getLogger(__name__)

SUPPORTED_DOCUMENT_EXTENSIONS = (".txt", ".md", ".markdown", ".html", ".htm", ".xhtml", ".epub")
# A file-dialog filter, e.g. for QFileDialog.getOpenFileName.
DOCUMENT_NAME_FILTER = (
    "Documents (" + " ".join(f"*{suffix}" for suffix in SUPPORTED_DOCUMENT_EXTENSIONS) + ")"
)

MB = 1024 * 1024
# A text, Markdown or HTML file larger than this is refused before it is read.
MAX_DOCUMENT_BYTES = 20 * MB
# All the parts read from one EPUB together, unpacked (markup included).
MAX_EPUB_UNPACKED_BYTES = 50 * MB
MAX_EPUB_MEMBERS = 10_000
# container.xml, the package document (OPF) and encryption.xml, each.
MAX_EPUB_XML_BYTES = 4 * MB
# A part over 1 MB that unpacks to more than 100 times its packed size is a zip bomb: markup
# compresses about 4:1.
MAX_COMPRESSION_RATIO = 100
_RATIO_CHECKED_FROM_BYTES = 1 * MB
# zipfile reads the whole central directory into memory before anyone can count its entries:
# its size is checked first (10,000 entries with ordinary names take about 1 MB).
_MAX_ZIP_DIRECTORY_BYTES = 4 * MB
_READ_CHUNK_BYTES = 64 * 1024

_SPEAKABLE = re.compile(r"[^\W_]")  # a letter or a digit, any script

# -- text clean-up ---------------------------------------------------------------------------

_TIDY_TABLE: dict[int, str | None] = {code: " " for code in range(0x20) if code not in (9, 10)}
_TIDY_TABLE.update({code: " " for code in range(0x7F, 0xA0)})
_TIDY_TABLE.update(
    {
        0x0B: "\n",
        0x0C: "\n\n",  # form feed: a page break
        0x0D: "\n",
        0x1C: "\n",
        0x1D: "\n",
        0x1E: "\n",
        0x85: "\n",
        0x2028: "\n",
        0x2029: "\n\n",
        # Invisible characters that split words for a speech model: soft hyphens (common in
        # EPUBs), zero-width spaces, word joiners, stray byte-order marks.
        0xAD: None,
        0x200B: None,
        0x2060: None,
        0xFEFF: None,
    }
)
_SPACES = re.compile(r"[^\S\n]+")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")
_BLANK_LINES = re.compile(r"\n{3,}")


def _tidy(text: str) -> str:
    """Collapse spaces, keep line breaks, make every paragraph break one blank line."""
    text = text.replace("\r\n", "\n").translate(_TIDY_TABLE)
    text = _SPACES.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


_PAUSE_MARKS = frozenset(".,;:!?\u2026")


def _join_cells(cells: list[str]) -> str:
    """A table row as one sentence: its non-empty cells joined by commas."""
    parts: list[str] = []
    for cell in cells:
        cell = cell.strip()
        if not cell:
            continue
        if parts:
            parts.append(" " if parts[-1][-1] in _PAUSE_MARKS else ", ")
        parts.append(cell)
    return "".join(parts)


# -- decoding --------------------------------------------------------------------------------

# UTF-32 first: its little-endian BOM starts with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Control characters that do not belong in text (tab, line feed, vertical tab, form feed,
# carriage return, substitute and escape do), and the replacement character.
_NOT_TEXT = re.compile("[\x01-\x08\x0e-\x19\x1c-\x1f\x7f-\x9f\ufffd]")
# More than this fraction of such characters: binary data, not text.
_MAX_NOT_TEXT_FRACTION = 0.05
_META_CHARSET = re.compile(
    rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]{1,40})""", re.IGNORECASE
)
_XML_ENCODING = re.compile(rb"""\A\s*<\?xml[^>]{0,200}?encoding\s*=\s*["']([A-Za-z0-9._-]{1,40})""")


def _bom_encoding(data: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    return None


def _declared_encoding(data: bytes) -> str | None:
    """The encoding an HTML or XML file names in its first bytes, if it is a usable one."""
    head = data[:4096]
    match = _XML_ENCODING.match(head) or _META_CHARSET.search(head)
    if match is None:
        return None
    label = match.group(1).decode("ascii")
    try:
        name = codecs.lookup(label).name
    except LookupError:
        logger.debug("unknown declared encoding %r ignored", label)
        return None
    if name.startswith(("utf-16", "utf-32")):
        return None  # the declaration was readable as ASCII, so the file is not UTF-16
    if name in ("ascii", "iso8859-1"):
        return "cp1252"  # what browsers do with these labels
    return name


def _decode(data: bytes, declared: str | None = None) -> str:
    """Bytes to text: BOM, else the declared encoding, else UTF-8, else cp1252, else Latin-1."""
    encoding = _bom_encoding(data)
    if encoding is not None:
        return data.decode(encoding, errors="replace")
    if declared is not None:
        try:
            return data.decode(declared, errors="replace")
        except LookupError:  # a codec that is not a text encoding ("zlib", "rot13")
            logger.debug("declared encoding %r is not a text encoding", declared)
    for encoding in ("utf-8", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _is_binary(data: bytes, text: str) -> bool:
    """Whether decoded bytes are binary data rather than text."""
    if _bom_encoding(data) is None and b"\x00" in data:
        return True  # UTF-8 and 8-bit text never hold NUL bytes
    if "\x00" in text:
        return True
    _, not_text = _NOT_TEXT.subn("", text)
    return not_text > len(text) * _MAX_NOT_TEXT_FRACTION


def _decode_text_file(name: str, data: bytes, declared: str | None = None) -> str:
    text = _decode(data, declared)
    if _is_binary(data, text):
        raise UserError(f"{name} is not a text file.")
    return text


# -- HTML ------------------------------------------------------------------------------------

_BLOCK_TAGS = frozenset(
    "address article aside blockquote body caption center dd details dialog dir div dl dt "
    "fieldset figcaption figure footer form frameset h1 h2 h3 h4 h5 h6 header hgroup hr html "
    "legend li main menu nav ol p pre section summary table tbody tfoot thead tr ul".split()
)
# Elements whose content is not read: code, metadata, widgets, fallbacks, ruby annotations.
_SKIPPED_TAGS = frozenset(
    "script style title template noscript svg math iframe object canvas audio video select "
    "textarea button rt rp".split()
)
_CELL_TAGS = frozenset(("td", "th"))
_WHITESPACE = re.compile(r"\s+")


class _TextExtractor(HTMLParser):
    """Collects the readable text of an HTML document, with paragraph and line breaks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping: list[str] = []
        self._pre_depth = 0
        self._row_has_text = False
        self._cell_pending = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        tag = tag.rpartition(":")[2]
        if tag in _SKIPPED_TAGS:
            self._skipping.append(tag)
            return
        if tag == "body":
            self._skipping.clear()  # an unclosed <title> or <noscript> in the head ends here
        if self._skipping:
            return
        if tag == "br":
            self.parts.append("\n")
        elif tag in _CELL_TAGS:
            self._cell_pending = self._row_has_text
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")
            if tag == "pre":
                self._pre_depth += 1
            elif tag == "tr":
                self._row_has_text = self._cell_pending = False

    def handle_endtag(self, tag: str) -> None:
        tag = tag.rpartition(":")[2]
        if tag in _SKIPPED_TAGS:
            if tag in self._skipping:
                last = len(self._skipping) - 1 - self._skipping[::-1].index(tag)
                del self._skipping[last:]
            return
        if self._skipping:
            return
        if tag in _BLOCK_TAGS:
            self.parts.append("\n\n")
            if tag == "pre" and self._pre_depth:
                self._pre_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._skipping or not data:
            return
        if self._pre_depth:
            data = data.replace("\r\n", "\n").replace("\r", "\n")
        else:
            data = _WHITESPACE.sub(" ", data)
        if data.strip():
            if self._cell_pending:
                self.parts.append(" " if self._last_char() in _PAUSE_MARKS else ", ")
                self._cell_pending = False
            self._row_has_text = True
        self.parts.append(data)

    def unknown_decl(self, data: str) -> None:
        if data.startswith("CDATA["):  # XHTML's <![CDATA[...]]> holds text
            self.handle_data(data[len("CDATA[") :])

    def _last_char(self) -> str:
        for part in reversed(self.parts):
            stripped = part.rstrip()
            if stripped:
                return stripped[-1]
        return ""


def html_to_text(markup: str) -> str:
    """The readable text of an HTML or XHTML document (see the module docstring)."""
    extractor = _TextExtractor()
    # close() is never called: CPython's end-of-input recovery rescans the rest of the input
    # once per "<" of an unterminated tag (minutes for 100 KB). The trailing space lets the
    # final text through; an unterminated tag or comment at the very end is dropped, as
    # browsers drop it.
    extractor.feed(markup + " ")
    return _tidy("".join(extractor.parts))


# -- Markdown --------------------------------------------------------------------------------

# Private-use characters frame the index of text saved from further processing (code spans,
# escaped characters); they are removed from the input first.
_SAVED_OPEN = "\ue000"
_SAVED_CLOSE = "\ue001"
_SAVED = re.compile(f"{_SAVED_OPEN}(\\d+){_SAVED_CLOSE}")

_FRONT_MATTER_START = re.compile(r"(---|\+\+\+)[ \t]*\n")
_FRONT_MATTER_KEY = re.compile(r"[ \t]*[\w-]+[ \t]*[:=]")
_FRONT_MATTER_END = {"---": re.compile(r"^(?:---|\.\.\.)[ \t]*$", re.MULTILINE)}
_FRONT_MATTER_END["+++"] = re.compile(r"^\+\+\+[ \t]*$", re.MULTILINE)
_QUOTE_MARKERS = re.compile(r"(?:[ \t]{0,3}>)+ ?")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_ATX_HEADING = re.compile(r" {0,3}#{1,6}(?=[ \t]|$)")
_SETEXT_UNDERLINE = re.compile(r" {0,3}(?:=+|-+)[ \t]*$")
_LIST_MARKER = re.compile(r"[ \t]*(?:[-*+]|(\d{1,9})[.)])(?:[ \t]+|$)(?:\[[ xX]\][ \t]+)?")
_DEFINITION = re.compile(r" {0,3}\[([^\[\]\n]{1,999})\]:(?:[ \t]+|$)")
_TABLE_DELIMITER_CELL = re.compile(r"[ \t]*:?-+:?[ \t]*")
_CELL_SEPARATOR = re.compile(r"(?<!\\)\|")
_HTML_REGION_START = re.compile(r"<!--|<(script|style)\b", re.IGNORECASE)
_HTML_REGION_END = {
    "": re.compile(r"-->"),
    "script": re.compile(r"</script\s*>", re.IGNORECASE),
    "style": re.compile(r"</style\s*>", re.IGNORECASE),
}
_BACKTICKS = re.compile(r"`+")

# Inline syntax. Every pattern stops at the next delimiter of its kind, so a failed attempt
# costs at most the distance to that delimiter: linear time on any input.
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*|[^\s<>@]+@[^\s<>@]+)>")
_LINK_TARGET = r"\([^()\n]*(?:\([^()\n]*\)[^()\n]*)*\)"
_IMAGE = re.compile(rf"!\[[^\[\]\n]*\](?:{_LINK_TARGET}|\[[^\[\]\n]*\])?")
_INLINE_LINK = re.compile(rf"\[([^\[\]\n]*)\]{_LINK_TARGET}")
_REFERENCE_LINK = re.compile(r"\[([^\[\]\n]*)\]\[[^\[\]\n]*\]")
_FOOTNOTE_REFERENCE = re.compile(r"\[\^[^\[\]\s]+\]")
_SHORTCUT_LINK = re.compile(r"\[([^\[\]\n]+)\]")
_TAG = re.compile(r"</?([A-Za-z][A-Za-z0-9-]*)(?:\s[^<>\n]*)?/?>")
_EMPHASIS = (
    re.compile(r"\*\*(?=\S)([^*\n]*?\S)\*\*"),
    re.compile(r"(?<!\w)__(?=\S)([^_\n]*?\S)__(?!\w)"),
    re.compile(r"\*(?=\S)([^*\n]*?\S)\*"),
    re.compile(r"(?<!\w)_(?=\S)([^_\n]*?\S)_(?!\w)"),
    re.compile(r"~~(?=\S)([^~\n]*?\S)~~"),
)


def _label(text: str) -> str:
    return " ".join(text.split()).casefold()


def _strip_front_matter(source: str) -> str:
    """Drop a YAML (---) or TOML (+++) metadata block at the very start."""
    start = _FRONT_MATTER_START.match(source)
    if start is None or not _FRONT_MATTER_KEY.match(source, start.end()):
        return source
    end = _FRONT_MATTER_END[start.group(1)].search(source, start.end())
    return source if end is None else source[end.end() :]


def _indent(line: str) -> int:
    body = line.lstrip(" \t")
    return len(line[: len(line) - len(body)].expandtabs(4))


def _is_fence_end(line: str, fence: str) -> bool:
    stripped = line.strip()
    return (
        _indent(line) < 4
        and len(stripped) >= len(fence)
        and stripped.count(fence[0]) == len(stripped)
    )


def _is_thematic_break(line: str) -> bool:
    marks = line.replace(" ", "").replace("\t", "")
    return len(marks) >= 3 and marks[0] in "-*_" and marks.count(marks[0]) == len(marks)


def _table_cells(line: str) -> list[str]:
    row = line.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return _CELL_SEPARATOR.split(row)


def _is_table_delimiter(line: str, columns: int) -> bool:
    if "-" not in line:
        return False
    cells = _table_cells(line)
    return len(cells) == columns and all(_TABLE_DELIMITER_CELL.fullmatch(c) for c in cells)


def _atx_heading_text(rest: str) -> str:
    rest = rest.strip()
    without_closing = rest.rstrip("#")
    if without_closing != rest and (not without_closing or without_closing[-1] in " \t"):
        rest = without_closing.strip()
    return rest


def _join_lines(lines: list[str]) -> str:
    """A paragraph's lines as one: soft line breaks become spaces, hard ones stay."""
    parts: list[str] = []
    for index, raw in enumerate(lines):
        line = raw.strip()
        hard_break = raw.endswith("  ") or (line.endswith("\\") and not line.endswith("\\\\"))
        if line.endswith("\\") and hard_break:
            line = line[:-1]
        parts.append(line)
        if index < len(lines) - 1:
            parts.append("\n" if hard_break else " ")
    return "".join(parts)


class _MarkdownBlocks:
    """Splits Markdown into blocks (paragraphs, headings, list items, table rows), line by line."""

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.definitions: set[str] = set()
        self._paragraph: list[str] = []
        self._in_list = False

    def _close(self) -> None:
        if self._paragraph:
            self.blocks.append(_join_lines(self._paragraph))
            self._paragraph.clear()

    def read(self, source: str) -> None:
        lines = source.split("\n")
        fence: str | None = None
        table_columns = 0
        skip_to = 0
        for index, raw in enumerate(lines):
            if index < skip_to:
                continue
            if fence is not None:
                if _is_fence_end(raw, fence):
                    fence = None
                continue
            quote = _QUOTE_MARKERS.match(raw)
            line = raw[quote.end() :] if quote else raw
            if not line.strip():
                self._close()
                table_columns = 0
                continue
            if table_columns:
                if "|" in line:
                    self.blocks.append(_join_cells(_table_cells(line)))
                    continue
                table_columns = 0
            indent = _indent(line)
            # The common case first: no block syntax starts with a letter.
            if line[len(line) - len(line.lstrip(" \t"))].isalpha() and "|" not in line:
                self._text_line(line, indent)
                continue
            fence_match = _FENCE.match(line)
            if fence_match and not (
                fence_match.group(1)[0] == "`" and "`" in line[fence_match.end() :]
            ):
                self._close()
                fence = fence_match.group(1)
                if indent < 2:
                    self._in_list = False  # an unindented fence ends the list
                continue
            if indent >= 4 and not self._paragraph and not self._in_list:
                continue  # an indented code block, dropped like fenced code
            heading = _ATX_HEADING.match(line)
            if heading:
                self._close()
                self.blocks.append(_atx_heading_text(line[heading.end() :]))
                self._in_list = False
                continue
            if self._paragraph and _SETEXT_UNDERLINE.match(line):
                self._close()  # the paragraph so far is a heading: a block of its own
                continue
            if _is_thematic_break(line):
                self._close()
                self._in_list = False
                continue
            definition = _DEFINITION.match(line)
            if definition and not self._paragraph:
                label = definition.group(1)
                if label.startswith("^"):  # a footnote: its text is read where it stands
                    self._paragraph.append(line[definition.end() :])
                else:
                    self.definitions.add(_label(label))
                continue
            if "|" in line and index + 1 < len(lines):
                columns = len(_table_cells(line))
                if _is_table_delimiter(lines[index + 1], columns):
                    self._close()
                    self.blocks.append(_join_cells(_table_cells(line)))
                    table_columns = columns
                    skip_to = index + 2
                    continue
            item = _LIST_MARKER.match(line)
            # Only a bullet or "1." may interrupt a paragraph (CommonMark), so "2019. was"
            # at the start of a wrapped line stays text.
            if item and (not self._paragraph or self._in_list or item.group(1) in (None, "1")):
                self._close()
                self._paragraph.append(line[item.end() :])
                self._in_list = True
                continue
            self._text_line(line, indent)
        self._close()

    def _text_line(self, line: str, indent: int) -> None:
        if indent >= 4 and not self._paragraph and not self._in_list:
            return  # an indented code block
        if not self._paragraph and indent < 2:
            self._in_list = False
        self._paragraph.append(line)


class _SavedText:
    """Text kept out of inline processing, restored at the end."""

    def __init__(self) -> None:
        self._texts: list[str] = []

    def save(self, text: str) -> str:
        self._texts.append(text)
        return f"{_SAVED_OPEN}{len(self._texts) - 1}{_SAVED_CLOSE}"

    def restore(self, text: str) -> str:
        return _SAVED.sub(lambda match: self._texts[int(match.group(1))], text)


def _save_code_spans(block: str, saved: _SavedText) -> str:
    """Replace each `code span` by a placeholder for its text (CommonMark pairing rules)."""
    if "`" not in block:
        return block
    runs = list(_BACKTICKS.finditer(block))
    if len(runs) < 2:
        return block
    # For each run, the next run of the same length: its closing partner, if any.
    partner: list[int | None] = [None] * len(runs)
    last_of_length: dict[int, int] = {}
    for index in range(len(runs) - 1, -1, -1):
        length = len(runs[index].group())
        partner[index] = last_of_length.get(length)
        last_of_length[length] = index
    pieces: list[str] = []
    position = 0
    index = 0
    while index < len(runs):
        closing = partner[index]
        if closing is None:
            index += 1
            continue
        code = block[runs[index].end() : runs[closing].start()].replace("\n", " ")
        if len(code) > 2 and code[0] == " " and code[-1] == " " and code.strip():
            code = code[1:-1]
        pieces.append(block[position : runs[index].start()])
        pieces.append(saved.save(code))
        position = runs[closing].end()
        index = closing + 1
    pieces.append(block[position:])
    return "".join(pieces)


def _drop_html_regions(text: str) -> str:
    """Remove HTML comments, scripts and styles (an unterminated one runs to the end)."""
    pieces: list[str] = []
    position = 0
    while start := _HTML_REGION_START.search(text, position):
        pieces.append(text[position : start.start()])
        end = _HTML_REGION_END[(start.group(1) or "").lower()].search(text, start.end())
        if end is None:
            position = len(text)
            break
        position = end.end()
    pieces.append(text[position:])
    return "".join(pieces)


def _replace_tag(match: re.Match[str]) -> str:
    name = match.group(1).lower()
    if name == "br":
        return "\n"
    return "\n\n" if name in _BLOCK_TAGS else ""


def _markdown_inline(text: str, definitions: set[str], saved: _SavedText) -> str:
    text = _ESCAPE.sub(lambda match: saved.save(match.group(1)), text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _IMAGE.sub("", text)
    text = _INLINE_LINK.sub(r"\1", text)
    text = _REFERENCE_LINK.sub(r"\1", text)
    text = _FOOTNOTE_REFERENCE.sub("", text)
    text = _SHORTCUT_LINK.sub(
        lambda match: match.group(1) if _label(match.group(1)) in definitions else match.group(0),
        text,
    )
    text = _TAG.sub(_replace_tag, text)
    for _ in range(3):  # nested emphasis ("***both***", "**a *b* c**") unwraps a layer a pass
        before = text
        for pattern in _EMPHASIS:
            text = pattern.sub(r"\1", text)
        if text == before:
            break
    return text


def markdown_to_text(source: str) -> str:
    """The readable text of a Markdown document (see the module docstring)."""
    source = source.replace("\r\n", "\n").replace("\r", "\n")
    source = source.replace(_SAVED_OPEN, "").replace(_SAVED_CLOSE, "")
    source = _strip_front_matter(source)
    reader = _MarkdownBlocks()
    reader.read(source)
    saved = _SavedText()
    # Code spans first, so that `<!--` or `<script>` in code is not taken for HTML.
    blocks = [_save_code_spans(block, saved) for block in reader.blocks]
    text = _drop_html_regions("\n\n".join(blocks))
    # Inline patterns never cross a line break, so they run over all the blocks at once.
    text = _markdown_inline(text, reader.definitions, saved)
    # Entities are decoded outside code and escapes only: saved text goes back afterwards.
    return _tidy(saved.restore(html.unescape(text)))


# -- EPUB ------------------------------------------------------------------------------------

_XHTML_MEDIA_TYPES = frozenset(("application/xhtml+xml", "text/html"))
_XHTML_SUFFIXES = (".xhtml", ".html", ".htm", ".xml")
_EOCD_SIGNATURE = b"PK\x05\x06"
_EOCD_SIZE = 22
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_ZIP64_LOCATOR_SIZE = 20
_ZIP64_EOCD_SIGNATURE = b"PK\x06\x06"
_ZIP64_EOCD_SIZE = 56
# What a damaged archive or bad XML raises from zipfile, zlib, lzma and expat.
_BAD_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,  # an unsupported compression method
    RuntimeError,  # an encrypted member
    EOFError,
    zlib.error,
    lzma.LZMAError,
    struct.error,
    ValueError,  # also expat's UnicodeDecodeError and our refused XML
    expat.ExpatError,
)


class _RefusedXml(ValueError):
    """XML with entity declarations: never expanded (billion laughs)."""


def _local_name(tag: str) -> str:
    return tag.rpartition("}")[2]


def _clark(name: str) -> str:
    """expat's "uri}local" as ElementTree's "{uri}local"."""
    return "{" + name if "}" in name else name


def _parse_xml(data: bytes) -> ElementTree.Element:
    """Parse small XML with expat, refusing entity declarations and external entities."""
    builder = ElementTree.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")

    def refuse(*_args: object) -> None:
        raise _RefusedXml("XML entity declarations are not accepted")

    def start(tag: str, attributes: dict[str, str]) -> None:
        builder.start(_clark(tag), {_clark(key): value for key, value in attributes.items()})

    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = lambda tag: builder.end(_clark(tag))
    parser.CharacterDataHandler = builder.data
    parser.Parse(data, True)
    return builder.close()


def _check_zip_directory(name: str, handle: BinaryIO) -> None:
    """Refuse an archive whose central directory is too big to load, before zipfile loads it."""
    invalid = UserError(f"{name} is not a valid EPUB file.")
    size = handle.seek(0, os.SEEK_END)
    tail_size = min(size, _ZIP64_LOCATOR_SIZE + _EOCD_SIZE + 0xFFFF)  # 0xFFFF: longest comment
    handle.seek(size - tail_size)
    tail = handle.read(tail_size)
    at = tail.rfind(_EOCD_SIGNATURE)
    if at < 0 or len(tail) - at < _EOCD_SIZE:
        raise invalid
    entries, directory_size = struct.unpack("<HL", tail[at + 10 : at + 16])
    if entries == 0xFFFF or directory_size == 0xFFFFFFFF:  # ZIP64: the real counts are elsewhere
        if at < _ZIP64_LOCATOR_SIZE:
            raise invalid
        signature, _, record_offset, _ = struct.unpack(
            "<4sLQL", tail[at - _ZIP64_LOCATOR_SIZE : at]
        )
        if signature != _ZIP64_LOCATOR_SIGNATURE or record_offset > size:
            raise invalid
        handle.seek(record_offset)
        record = handle.read(_ZIP64_EOCD_SIZE)
        if len(record) < _ZIP64_EOCD_SIZE or not record.startswith(_ZIP64_EOCD_SIGNATURE):
            raise invalid
        entries, directory_size = struct.unpack("<QQ", record[32:48])
    if entries > MAX_EPUB_MEMBERS or directory_size > _MAX_ZIP_DIRECTORY_BYTES:
        raise UserError(
            f"{name} is not a valid EPUB file: it has more than {MAX_EPUB_MEMBERS:,} parts."
        )


class _EpubReader:
    """Reads one EPUB's spine, within a budget of unpacked bytes."""

    def __init__(self, name: str, archive: zipfile.ZipFile) -> None:
        self.name = name
        self.archive = archive
        self.budget = MAX_EPUB_UNPACKED_BYTES
        infos = archive.infolist()
        if len(infos) > MAX_EPUB_MEMBERS:
            raise UserError(
                f"{name} is not a valid EPUB file: it has more than {MAX_EPUB_MEMBERS:,} parts."
            )
        self.members = {info.filename: info for info in infos}
        self.members_folded = {info.filename.casefold(): info for info in infos}

    def invalid(self, why: str) -> UserError:
        logger.info("%s is not a valid EPUB: %s", self.name, why)
        return UserError(f"{self.name} is not a valid EPUB file.")

    def member(self, path: str) -> zipfile.ZipInfo | None:
        return self.members.get(path) or self.members_folded.get(path.casefold())

    def read(self, info: zipfile.ZipInfo, limit: int) -> bytes:
        """A member's bytes, counted as they unpack: declared sizes are checked, not trusted."""
        limit = min(limit, self.budget)
        if info.file_size > _RATIO_CHECKED_FROM_BYTES and info.file_size > (
            MAX_COMPRESSION_RATIO * max(info.compress_size, 1)
        ):
            raise UserError(
                f"{self.name} is not a valid EPUB file: a part of it unpacks to over "
                f"{MAX_COMPRESSION_RATIO} times its packed size (a zip bomb)."
            )
        if info.file_size > limit:
            raise self._too_large(info)
        chunks: list[bytes] = []
        total = 0
        with self.archive.open(info) as stream:
            while chunk := stream.read(_READ_CHUNK_BYTES):
                total += len(chunk)
                if total > info.file_size or total > limit:
                    raise self._too_large(info)
                chunks.append(chunk)
        self.budget -= total
        return b"".join(chunks)

    def _too_large(self, info: zipfile.ZipInfo) -> UserError:
        if info.filename.lower().endswith((".xml", ".opf")):
            return self.invalid(f"{info.filename} is too large")
        return UserError(
            f"{self.name} is too large to read: its text unpacks to over "
            f"{MAX_EPUB_UNPACKED_BYTES // MB} MB."
        )

    def xml(self, path: str) -> ElementTree.Element | None:
        info = self.member(path)
        return None if info is None else _parse_xml(self.read(info, MAX_EPUB_XML_BYTES))

    def package_path(self) -> str:
        container = self.xml("META-INF/container.xml")
        if container is None:
            raise self.invalid("no META-INF/container.xml")
        rootfiles = [e for e in container.iter() if _local_name(e.tag) == "rootfile"]
        rootfiles.sort(key=lambda e: e.get("media-type") != "application/oebps-package+xml")
        for rootfile in rootfiles:
            if rootfile.get("full-path"):
                return unquote(rootfile.get("full-path", "")).lstrip("/")
        raise self.invalid("container.xml names no package document")

    def encrypted_paths(self) -> set[str]:
        encryption = self.xml("META-INF/encryption.xml")
        if encryption is None:
            return set()
        return {
            _resolve("", reference.get("URI", "")).casefold()
            for reference in encryption.iter()
            if _local_name(reference.tag) == "CipherReference"
        }

    def spine_paths(self, package_path: str) -> list[str]:
        package = self.xml(package_path)
        if package is None:
            raise self.invalid(f"no package document at {package_path}")
        base = posixpath.dirname(package_path)
        manifest: dict[str, tuple[str, str]] = {}
        spine: list[tuple[str, bool]] = []
        for element in package.iter():
            kind = _local_name(element.tag)
            if kind == "item" and element.get("id") and element.get("href"):
                href = element.get("href", "")
                manifest[element.get("id", "")] = (href, element.get("media-type", ""))
            elif kind == "itemref" and element.get("idref"):
                spine.append((element.get("idref", ""), element.get("linear") != "no"))
        if not spine:
            raise self.invalid("the package document has no spine")
        linear = [idref for idref, is_linear in spine if is_linear] or [i for i, _ in spine]
        paths = []
        for idref in linear:
            if idref not in manifest:
                logger.warning("%s: spine item %r is not in the manifest", self.name, idref)
                continue
            href, media_type = manifest[idref]
            if "://" in href:
                continue  # a remote resource: nothing to read offline
            readable = media_type in _XHTML_MEDIA_TYPES or (
                not media_type and href.lower().endswith(_XHTML_SUFFIXES)
            )
            if readable:
                paths.append(_resolve(base, href))
            else:
                logger.debug("%s: spine item %s (%s) is not text", self.name, href, media_type)
        return paths

    def text(self) -> str:
        paths = self.spine_paths(self.package_path())
        encrypted = self.encrypted_paths()
        chapters: list[str] = []
        found = 0
        for path in paths:
            if path.casefold() in encrypted:
                raise UserError(f"{self.name} is protected by DRM and cannot be read.")
            info = self.member(path)
            if info is None:
                logger.warning("%s: %s is in the spine but not in the archive", self.name, path)
                continue
            found += 1
            data = self.read(info, self.budget)
            chapter = html_to_text(_decode(data, _declared_encoding(data) or "utf-8"))
            if chapter:
                chapters.append(chapter)
        if not found:
            raise self.invalid("none of the spine's documents is in the archive")
        return "\n\n".join(chapters)


def _resolve(base: str, href: str) -> str:
    """A manifest href (relative, %-encoded, maybe with a #fragment) as an archive path."""
    path = unquote(href.partition("#")[0])
    return posixpath.normpath(posixpath.join(base, path)).lstrip("/")


def _read_epub(path: Path, name: str) -> str:
    try:
        with path.open("rb") as handle:
            _check_zip_directory(name, handle)
            with zipfile.ZipFile(handle) as archive:
                return _EpubReader(name, archive).text()
    except OSError as error:
        raise _os_error(name, error) from None
    except _BAD_ARCHIVE_ERRORS as error:
        logger.info("%s is not a valid EPUB: %s: %s", name, type(error).__name__, error)
        raise UserError(f"{name} is not a valid EPUB file.") from None


# -- files -----------------------------------------------------------------------------------


def _os_error(name: str, error: OSError) -> UserError:
    if isinstance(error, (FileNotFoundError, NotADirectoryError)):
        return UserError(f"{name} does not exist.")
    if isinstance(error, IsADirectoryError):
        return UserError(f"{name} is a folder, not a document.")
    if isinstance(error, PermissionError):
        return UserError(f"{name} cannot be read: permission denied.")
    return UserError(f"{name} cannot be read: {error.strerror or error}.")


def _size_text(size: int) -> str:
    return f"{size / MB:.1f} MB"


def _read_bytes(path: Path, name: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as error:
        raise _os_error(name, error) from None
    if len(data) > MAX_DOCUMENT_BYTES:  # it grew since it was measured
        raise UserError(
            f"{name} is too large to read (over {_size_text(MAX_DOCUMENT_BYTES)}; "
            f"the limit is {_size_text(MAX_DOCUMENT_BYTES)})."
        )
    return data


_CONVERTERS: dict[str, Callable[[str, bytes], str]] = {
    ".txt": lambda name, data: _tidy(_decode_text_file(name, data)),
    ".md": lambda name, data: markdown_to_text(_decode_text_file(name, data)),
    ".html": lambda name, data: html_to_text(
        _decode_text_file(name, data, _declared_encoding(data))
    ),
}
_CONVERTERS[".markdown"] = _CONVERTERS[".md"]
_CONVERTERS[".htm"] = _CONVERTERS[".xhtml"] = _CONVERTERS[".html"]


def is_supported_document(path: str | os.PathLike[str]) -> bool:
    """Whether ``read_document`` reads files with this name's extension."""
    return Path(path).suffix.lower() in SUPPORTED_DOCUMENT_EXTENSIONS


def read_document(path: str | os.PathLike[str]) -> str:
    """The speakable plain text of a .txt, .md, .html or .epub file.

    Markup is dropped; paragraphs (headings, list items and table rows too) are separated by
    one blank line, and lines inside a paragraph by a newline; spaces are collapsed. The
    result always has a letter or a digit in it. Raises UserError with one sentence for a
    missing, unreadable, empty, binary, oversized, unsupported or damaged file, or one with
    nothing to read. Declared sizes are checked, never trusted, and every parser here runs in
    linear time on hostile input.

    - Text: UTF-8 (BOM or not), UTF-16/32 with a BOM, else cp1252, else Latin-1; binary data
      (NUL bytes, over 5% control characters) is refused.
    - Markdown: code blocks (fenced and indented) are dropped, since read aloud they are
      mostly punctuation; inline code is kept as text. Images are dropped, links keep their
      text, list markers, emphasis marks and front matter go, table cells are joined by
      commas. A line-based converter with linear regular expressions, not a full CommonMark
      parser: markdown-it-py is exact, but takes minutes on a few megabytes of crafted
      brackets.
    - HTML: the body's text (no <title>, scripts, styles, forms, media fallbacks or ruby
      annotations; image alt text is not read); the charset a <meta> names is honoured.
    - EPUB: the spine's XHTML documents in reading order; items marked linear="no" are
      skipped unless there is nothing else; a DRM-protected book is refused by name.
    """
    path = Path(path)
    name = path.name or str(path)
    started = time.perf_counter()
    try:
        info = path.stat()
    except OSError as error:
        raise _os_error(name, error) from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{name} is a folder, not a document.")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_DOCUMENT_EXTENSIONS:
        supported = ", ".join(SUPPORTED_DOCUMENT_EXTENSIONS[:-1])
        raise UserError(
            f"{name} is not a document XTTS Desktop can read; it reads {supported} "
            f"and {SUPPORTED_DOCUMENT_EXTENSIONS[-1]} files."
        )
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{name} is not a regular file.")
    if info.st_size == 0:
        raise UserError(f"{name} is empty.")
    if suffix == ".epub":
        text = _read_epub(path, name)
    else:
        if info.st_size > MAX_DOCUMENT_BYTES:
            raise UserError(
                f"{name} is too large to read ({_size_text(info.st_size)}; "
                f"the limit is {_size_text(MAX_DOCUMENT_BYTES)})."
            )
        data = _read_bytes(path, name)
        if not data:
            raise UserError(f"{name} is empty.")
        text = _CONVERTERS[suffix](name, data)
    if not _SPEAKABLE.search(text):
        raise UserError(f"{name} has no text to read.")
    logger.info(
        "read %s: %d characters in %.0f ms", name, len(text), (time.perf_counter() - started) * 1e3
    )
    return text
