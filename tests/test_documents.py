"""Tests for xtts_desktop.documents: real files of every format, hostile ones included."""

from __future__ import annotations

import os
import random
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xtts_desktop import documents
from xtts_desktop.documents import (
    SUPPORTED_DOCUMENT_EXTENSIONS,
    html_to_text,
    is_supported_document,
    markdown_to_text,
    read_document,
)
from xtts_desktop.errors import UserError

MB = 1024 * 1024

CONTAINER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles>
    <rootfile full-path="{opf}" media-type="application/oebps-package+xml"/>
  </rootfiles>
</container>
"""

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles><rootfile full-path="&lol9;" media-type="application/oebps-package+xml"/></rootfiles>
</container>
"""


def xhtml(title: str, body: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<!DOCTYPE html>\n<html xmlns="http://www.w3.org/1999/xhtml">'
        f"<head><title>{title}</title></head><body>{body}</body></html>"
    )


def package_document(items: list[tuple[str, str, str]], spine: list[str]) -> str:
    """An OPF: manifest items (id, href, media type) and the spine's itemrefs (idref[:no])."""
    manifest = "".join(
        f'<item id="{item_id}" href="{href}" media-type="{media_type}"/>'
        for item_id, href, media_type in items
    )
    itemrefs = "".join(
        f'<itemref idref="{ref.split(":")[0]}"'
        + (' linear="no"' if ref.endswith(":no") else "")
        + "/>"
        for ref in spine
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Book</dc:title>'
        f"</metadata><manifest>{manifest}</manifest><spine>{itemrefs}</spine></package>"
    )


def write_epub(path: Path, files: dict[str, str | bytes], opf: str = "OEBPS/content.opf") -> Path:
    """An EPUB as a reading system expects it: mimetype first and stored, then the rest."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        if "META-INF/container.xml" not in files:
            archive.writestr("META-INF/container.xml", CONTAINER_XML.format(opf=opf))
        for name, content in files.items():
            archive.writestr(name, content)
    return path


def two_chapter_book(tmp_path: Path) -> Path:
    """Spine order (intro, then the end) is neither the manifest's nor the archive's order."""
    items = [
        ("end", "text/a_end.xhtml", "application/xhtml+xml"),
        ("cover", "images/cover.svg", "image/svg+xml"),
        ("notes", "text/notes.xhtml", "application/xhtml+xml"),
        ("intro", "text/z%20intro.xhtml", "application/xhtml+xml"),
    ]
    return write_epub(
        tmp_path / "book.epub",
        {
            "OEBPS/content.opf": package_document(items, ["cover", "intro", "notes:no", "end"]),
            "OEBPS/images/cover.svg": '<svg xmlns="http://www.w3.org/2000/svg"><text>Cover</text></svg>',
            "OEBPS/text/a_end.xhtml": xhtml("End", "<h2>The End</h2><p>They lived happily.</p>"),
            "OEBPS/text/notes.xhtml": xhtml("Notes", "<p>A non-linear note.</p>"),
            "OEBPS/text/z intro.xhtml": xhtml(
                "Intro", "<h1>Chapter One</h1><p>It was a dark&#160;and stormy night.</p>"
            ),
        },
    )


# -- plain text ------------------------------------------------------------------------------


def test_utf8_with_bom_and_accents(tmp_path):
    path = tmp_path / "accents.txt"
    path.write_bytes("\ufeffCafé crème, déjà vu.\r\nÀ bientôt, señor Müller!\r\n".encode())
    assert read_document(path) == "Café crème, déjà vu.\nÀ bientôt, señor Müller!"


def test_utf16_with_bom(tmp_path):
    path = tmp_path / "wide.txt"
    path.write_bytes("Ελληνικά και 日本語.\n\n\nSecond paragraph.".encode("utf-16"))
    assert path.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")
    assert read_document(path) == "Ελληνικά και 日本語.\n\nSecond paragraph."


def test_cp1252_falls_back_cleanly(tmp_path):
    text = "Naïve café \u2013 \u201cquoted\u201d for \u20ac5."
    path = tmp_path / "windows.txt"
    path.write_bytes(text.encode("cp1252"))
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    assert read_document(path) == text


def test_whitespace_is_normalised_but_lines_are_kept(tmp_path):
    path = tmp_path / "messy.txt"
    path.write_text("  Title  \n\n\n\n   First\tline   \nsecond line\x0cNext page\u00a0here.  ")
    assert read_document(path) == "Title\n\nFirst line\nsecond line\n\nNext page here."


def test_binary_data_named_txt_is_refused(tmp_path):
    path = tmp_path / "photo.txt"
    path.write_bytes(random.Random(0).randbytes(4096))
    with pytest.raises(UserError, match=r"^photo\.txt is not a text file\.$"):
        read_document(path)
    # No NUL byte, but mostly control characters: still not text.
    path.write_bytes(bytes(range(1, 32)) * 20 + b"some words")
    with pytest.raises(UserError, match="is not a text file"):
        read_document(path)


# -- Markdown --------------------------------------------------------------------------------

MARKDOWN = """\
---
title: Front matter is not read
---
# Getting *started* #

Read the [manual](https://example.com/a_(b) "Title") first, then [the FAQ][faq].
This line wraps; snake_case_names keep their underscores.

![diagram](img.png)

- **Bold** item
- Item with `code <b> *not em*` inside
  continued here
* [x] Done task

1. First
2. Second

```bash
rm -rf / # code blocks are not read
```

    indented code is not read either

| Name | Age |
| ---- | --: |
| Ann  | 30  |

Setext heading
--------------

> Quoted ***text*** &amp; more,\\
> with a hard break and an escaped \\*star\\*.

<p>Inline <em>HTML</em></p>
<script>alert("not read")</script>
<!-- a comment -->
***

[faq]: https://example.com/faq
"""

MARKDOWN_TEXT = (
    "Getting started\n\n"
    "Read the manual first, then the FAQ. This line wraps; snake_case_names keep their "
    "underscores.\n\n"
    "Bold item\n\n"
    "Item with code <b> *not em* inside continued here\n\n"
    "Done task\n\n"
    "First\n\n"
    "Second\n\n"
    "Name, Age\n\n"
    "Ann, 30\n\n"
    "Setext heading\n\n"
    "Quoted text & more,\nwith a hard break and an escaped *star*.\n\n"
    "Inline HTML"
)


def test_markdown_syntax_is_dropped(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    assert read_document(path) == MARKDOWN_TEXT
    assert markdown_to_text(MARKDOWN) == MARKDOWN_TEXT
    (tmp_path / "same.markdown").write_text(MARKDOWN, encoding="utf-8")
    assert read_document(tmp_path / "same.markdown") == MARKDOWN_TEXT


# -- HTML ------------------------------------------------------------------------------------

HTML = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Page title</title>
<style>body { color: red; }</style>
<script>var hidden = "script text";</script></head>
<body>
<nav><a href="/">Home</a></nav>
<h1>Fish &amp; Chips</h1>
<p>First   paragraph,
spread over lines.<br>Second line &mdash; with &eacute;&#233;&#x263A;.</p>
<div>Block <span>inline</span><img src="x.png" alt="an image"></div>
<ul><li>One</li><li>Two</li></ul>
<table><tr><th>Name</th><th>Age</th></tr><tr><td>Ann</td><td></td><td>30</td></tr></table>
<noscript>Enable JavaScript</noscript>
<pre>line one
  line two</pre>
</body></html>
"""

HTML_TEXT = (
    "Home\n\nFish & Chips\n\nFirst paragraph, spread over lines.\n"
    "Second line \u2014 with \u00e9\u00e9\u263a.\n\nBlock inline\n\nOne\n\nTwo\n\n"
    "Name, Age\n\nAnn, 30\n\nline one\nline two"
)


@pytest.mark.parametrize("suffix", [".html", ".htm", ".HTML"])
def test_html_text_without_markup(tmp_path, suffix):
    path = tmp_path / f"page{suffix}"
    path.write_text(HTML, encoding="utf-8")
    assert read_document(path) == HTML_TEXT


def test_html_declared_charset_is_used(tmp_path):
    # 0xA4 is the euro sign in ISO-8859-15 but a currency sign in cp1252 or Latin-1.
    page = '<html><head><meta charset="iso-8859-15"></head><body><p>Price: 5 \u20ac</p>'
    path = tmp_path / "euro.html"
    path.write_bytes(page.encode("iso-8859-15"))
    assert read_document(path) == "Price: 5 \u20ac"


def test_html_with_only_a_script_has_no_text(tmp_path):
    path = tmp_path / "app.html"
    path.write_text("<html><head><title>App</title></head><body><script>run()</script></body>")
    with pytest.raises(UserError, match=r"^app\.html has no text to read\.$"):
        read_document(path)


def test_malformed_markup_takes_linear_time():
    # CPython's HTMLParser.close() rescans unterminated tags once per "<": 100 KB of these
    # took two minutes. Hostile Markdown brackets are bounded the same way.
    started = time.perf_counter()
    assert html_to_text("<p>Kept</p>" + "<a\n" * 100_000) == "Kept"
    markdown_to_text("[![*_`<a " * 100_000)
    assert time.perf_counter() - started < 10


# -- EPUB ------------------------------------------------------------------------------------


def test_epub_reads_the_spine_in_order(tmp_path):
    assert read_document(two_chapter_book(tmp_path)) == (
        "Chapter One\n\nIt was a dark and stormy night.\n\nThe End\n\nThey lived happily."
    )


def test_epub_drm_is_named(tmp_path):
    book = two_chapter_book(tmp_path)
    with zipfile.ZipFile(book, "a") as archive:
        archive.writestr(
            "META-INF/encryption.xml",
            '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
            'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>'
            '<enc:CipherData><enc:CipherReference URI="OEBPS/text/a_end.xhtml"/>'
            "</enc:CipherData></enc:EncryptedData></encryption>",
        )
    with pytest.raises(UserError, match=r"^book\.epub is protected by DRM"):
        read_document(book)


def build_zip_bomb(path: Path, megabytes: int) -> Path:
    """A book whose one chapter is ``megabytes`` of zeros, deflated to about 1/1000 of that."""
    path.parent.mkdir(parents=True, exist_ok=True)
    opf = package_document([("c1", "c1.xhtml", "application/xhtml+xml")], ["c1"])
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        archive.writestr("META-INF/container.xml", CONTAINER_XML.format(opf="content.opf"))
        archive.writestr("content.opf", opf)
        block = bytes(MB)
        with archive.open("c1.xhtml", "w") as member:
            for _ in range(megabytes):
                member.write(block)
    return path


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory) -> Path:
    return build_zip_bomb(tmp_path_factory.mktemp("bomb") / "bomb.epub", 200)


def read_with_peak_memory(path: Path) -> tuple[BaseException | None, int]:
    tracemalloc.start()
    try:
        read_document(path)
    except Exception as error:  # returned for the test to check
        return error, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return None, 0


def test_zip_bomb_is_refused_without_unpacking(zip_bomb):
    assert zip_bomb.stat().st_size < 2 * MB
    error, peak = read_with_peak_memory(zip_bomb)
    assert isinstance(error, UserError), error
    assert "zip bomb" in str(error)
    assert peak < 60 * MB


def patch_declared_size(path: Path, member: str, size: int) -> None:
    """Make the central directory lie about a member's unpacked size."""
    data = bytearray(path.read_bytes())
    header = data.find(b"PK\x01\x02")
    while True:  # this member's central directory entry
        name_length, extra_length, comment_length = struct.unpack_from("<3H", data, header + 28)
        if data[header + 46 : header + 46 + name_length] == member.encode():
            break
        header += 46 + name_length + extra_length + comment_length
    struct.pack_into("<L", data, header + 24, size)
    path.write_bytes(bytes(data))


def test_zip_bomb_with_a_lying_size_stops_at_the_declared_size(zip_bomb, tmp_path):
    # Declared 10 MB (under every limit, a plausible ratio), really 200 MB: unpacking stops at
    # 10 MB and the checksum fails.
    liar = tmp_path / "liar.epub"
    liar.write_bytes(zip_bomb.read_bytes())
    patch_declared_size(liar, "c1.xhtml", 10 * MB)
    with zipfile.ZipFile(liar) as archive:
        assert archive.getinfo("c1.xhtml").file_size == 10 * MB
    error, peak = read_with_peak_memory(liar)
    assert isinstance(error, UserError), error
    assert str(error) == "liar.epub is not a valid EPUB file."
    assert peak < 60 * MB


def test_epub_text_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(documents, "MAX_EPUB_UNPACKED_BYTES", 200_000)
    words = "<p>" + "All work and no play. " * 5_000 + "</p>"  # about 110 KB a chapter
    items = [(f"c{n}", f"c{n}.xhtml", "application/xhtml+xml") for n in range(2)]
    files = {f"OEBPS/c{n}.xhtml": xhtml("c", words) for n in range(2)}
    files["OEBPS/content.opf"] = package_document(items, ["c0", "c1"])
    book = write_epub(tmp_path / "long.epub", files)
    with pytest.raises(UserError, match=r"^long\.epub is too large to read"):
        read_document(book)


def test_too_many_parts_are_refused_before_loading(tmp_path):
    book = write_epub(tmp_path / "parts.epub", {f"p/{n}": "" for n in range(10_001)})
    with pytest.raises(UserError, match=r"^parts\.epub is not a valid EPUB file: it has more"):
        read_document(book)


def as_zip64(path: Path, entries: int | None = None) -> None:
    """Rewrite a zip's end records the ZIP64 way (as for over 65,535 parts), maybe lying."""
    data = path.read_bytes()
    end = data.rfind(b"PK\x05\x06")
    count, directory_size, directory_offset = struct.unpack_from("<H2L", data, end + 10)
    count = count if entries is None else entries
    record = struct.pack(
        "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, directory_size,
        directory_offset,
    )  # fmt: skip
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1)
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, *[0xFFFFFFFF] * 2, 0)
    path.write_bytes(data[:end] + record + locator + eocd)


def test_zip64_archives_are_read_and_checked(tmp_path):
    book = two_chapter_book(tmp_path)
    as_zip64(book)
    with zipfile.ZipFile(book) as archive:
        assert archive.testzip() is None
    assert read_document(book).startswith("Chapter One")
    book = two_chapter_book(tmp_path)
    as_zip64(book, entries=1_000_000)
    with pytest.raises(UserError, match=r"^book\.epub is not a valid EPUB file: it has more"):
        read_document(book)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_billion_laughs_is_refused(tmp_path, encoding):
    # In UTF-16 no "<!ENTITY" bytes appear: the parser itself must refuse the declarations.
    container = BILLION_LAUGHS.replace('version="1.0"?>', f'version="1.0" encoding="{encoding}"?>')
    book = write_epub(
        tmp_path / "laughs.epub", {"META-INF/container.xml": container.encode(encoding)}
    )
    error, peak = read_with_peak_memory(book)
    assert isinstance(error, UserError), error
    assert str(error) == "laughs.epub is not a valid EPUB file."
    assert peak < 20 * MB


@pytest.mark.parametrize(
    "files",
    [
        {},  # no container.xml
        {"META-INF/container.xml": "<container><rootfiles/></container>"},
        {"META-INF/container.xml": "<container><rootfiles><rootfile full-path="},
        {"META-INF/container.xml": CONTAINER_XML.format(opf="missing.opf")},
        {
            "META-INF/container.xml": CONTAINER_XML.format(opf="c.opf"),
            "c.opf": "<package><manifest/><spine/></package>",
        },
    ],
    ids=["no-container", "no-rootfile", "broken-xml", "no-opf", "empty-spine"],
)
def test_broken_epubs_are_refused(tmp_path, files):
    with zipfile.ZipFile(tmp_path / "broken.epub", "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    with pytest.raises(UserError, match=r"^broken\.epub is not a valid EPUB file\.$"):
        read_document(tmp_path / "broken.epub")


def test_random_bytes_epub_is_refused(tmp_path):
    path = tmp_path / "noise.epub"
    path.write_bytes(random.Random(1).randbytes(10_000))
    with pytest.raises(UserError, match=r"^noise\.epub is not a valid EPUB file\.$"):
        read_document(path)


def test_plain_text_named_epub_is_refused(tmp_path):
    path = tmp_path / "notes.epub"
    path.write_text("Chapter one.\n\nIt was a dark and stormy night, très sombre.\n" * 50, "utf-8")
    with pytest.raises(UserError) as caught:
        read_document(path)
    message = str(caught.value)
    assert message == "notes.epub is not a valid EPUB file."
    # The same text under its own name reads; a real EPUB still reads after the refusal.
    assert "stormy night" in read_document(path.rename(tmp_path / "notes.txt"))
    assert "Chapter One" in read_document(two_chapter_book(tmp_path))


# -- files -----------------------------------------------------------------------------------


def test_file_problems_are_one_sentence(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match=r"^empty\.txt is empty\.$"):
        read_document(empty)
    folder = tmp_path / "chapters.epub"
    folder.mkdir()
    with pytest.raises(UserError, match=r"^chapters\.epub is a folder"):
        read_document(folder)
    with pytest.raises(UserError, match=r"^gone\.md does not exist\.$"):
        read_document(tmp_path / "gone.md")
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF-1.7 text")
    with pytest.raises(UserError, match=r"^paper\.pdf is not a document") as raised:
        read_document(pdf)
    assert all(suffix in str(raised.value) for suffix in SUPPORTED_DOCUMENT_EXTENSIONS)
    assert is_supported_document("Book.EPUB") and not is_supported_document(pdf)


def test_too_large_a_file_is_refused_unread(tmp_path):
    path = tmp_path / "huge.txt"
    with path.open("wb") as handle:
        handle.truncate(21 * MB)  # sparse: no disk used, and reading it would find zeros
    with pytest.raises(UserError, match=r"^huge\.txt is too large to read \(21\.0 MB"):
        read_document(path)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root reads files whatever their permissions",
)
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("hidden")
    path.chmod(0)
    with pytest.raises(UserError, match=r"^secret\.txt cannot be read: permission denied\.$"):
        read_document(path)


# -- anything at all -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=2000), suffix=st.sampled_from([".txt", ".html", ".md"]))
def test_any_bytes_give_text_or_a_user_error(scratch, data, suffix):
    path = scratch / f"any{suffix}"
    path.write_bytes(data)
    try:
        text = read_document(path)
    except UserError as error:
        assert str(error).startswith(f"any{suffix} ")
    else:
        assert isinstance(text, str) and text == text.strip()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_epubs_give_text_or_a_user_error(scratch, data):
    pristine = scratch / "pristine.epub"
    if not pristine.exists():
        two_chapter_book(scratch).rename(pristine)
    book = bytearray(pristine.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        book[data.draw(st.integers(0, len(book) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(book) // 2, len(book)))
    path = scratch / "damaged.epub"
    path.write_bytes(bytes(book[:cut]))
    try:
        text = read_document(path)
    except UserError as error:
        assert str(error).startswith("damaged.epub ")
    else:
        assert isinstance(text, str) and text
