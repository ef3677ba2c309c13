"""N-Triples and N-Quads: the grammar (RDF 1.1) as regular expressions, the escapes, and a streaming reader that
turns a file into terms a chunk of lines at a time (``kgem.data.rdf`` turns the terms into labels).

Each chunk is parsed with one regular expression that matches every line: a triple, a comment or a blank line. When
the matches are fewer than the lines, the first line that does not match is parsed again, term by term, to say what
is wrong with it (``DataError`` naming ``file:line``): an unterminated IRI, a missing final ``.``, a bad escape, a
literal as subject, ...
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from kgem.data.readers import CHUNK_BYTES, iter_line_chunks
from kgem.errors import DataError

# The N-Triples grammar (RDF 1.1), as regular expressions; loops unrolled so that plain characters go in runs.
_HEX = "[0-9A-Fa-f]"
_UCHAR = rf"\\u{_HEX}{{4}}|\\U{_HEX}{{8}}"
_IRI_CHAR = r'[^\x00-\x20<>"{}|^`\\]'
IRI = rf"<{_IRI_CHAR}*(?:(?:{_UCHAR}){_IRI_CHAR}*)*>"
_BASE = ("A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c\u200d\u2070-\u218f"
         "\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd\U00010000-\U000effff")
_NAME_CHAR = _BASE + "_:0-9\\-\u00b7\u0300-\u036f\u203f\u2040"
BNODE = rf"_:[{_BASE}_:0-9](?:[{_NAME_CHAR}.]*[{_NAME_CHAR}])?"
_STRING_CHAR = r'[^"\\\n\r]'
_STRING = rf'"{_STRING_CHAR}*(?:(?:\\[tbnrf"\'\\]|{_UCHAR}){_STRING_CHAR}*)*"'
LANGUAGE = "[a-zA-Z]+(?:-[a-zA-Z0-9]+)*"
LITERAL = rf"{_STRING}(?:@{LANGUAGE}|\^\^{IRI})?"
_WS = "[ \t]*"
BNODE_LABEL = re.compile(BNODE)
# a literal's label: its escaped lexical form, then a language tag or a datatype's label (prefixed or <IRI>)
LITERAL_LABEL = re.compile(rf'"((?:{_STRING_CHAR}|\\[tbnrf"\'\\]|{_UCHAR})*)"(?:@({LANGUAGE})|\^\^(.+))?')
BAD_IRI = re.compile(r'[\x00-\x20<>"{}|^`\\]')
_ESCAPE = re.compile(r"\\(?:u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))", re.DOTALL)
_ECHARS = {"t": "\t", "b": "\b", "n": "\n", "r": "\r", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
_TO_ESCAPE = re.compile('[\x00-\x1f"\\\\\x7f-\x9f\u2028\u2029]')
_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}


def _line_pattern(quads: bool) -> re.Pattern[str]:
    """One line of N-Triples (or N-Quads): a triple, a comment or nothing, then its LF; the groups are the subject,
    predicate, object (and graph) terms, empty for a line without a triple."""
    graph = rf"(?:({IRI}|{BNODE}){_WS})?" if quads else ""
    triple = rf"({IRI}|{BNODE}){_WS}({IRI}){_WS}({IRI}|{BNODE}|{LITERAL}){_WS}{graph}\."
    return re.compile(rf"^{_WS}(?:{triple}{_WS})?(?:#[^\n]*)?\n", re.MULTILINE)


LINES = {False: _line_pattern(False), True: _line_pattern(True)}


def unescape(text: str) -> str:
    """Decode N-Triples' escapes (``\\t``, ``\\uXXXX``, ...: the grammar has checked them); a ``\\u``/``\\U`` that
    names no character (a surrogate, or beyond U+10FFFF) is a ValueError."""

    def one(match: re.Match[str]) -> str:
        code = match.group(1) or match.group(2)
        if code is None:
            return _ECHARS[match.group(3)]
        value = int(code, 16)
        if 0xD800 <= value <= 0xDFFF or value > 0x10FFFF:
            raise ValueError(f"escape {match.group()!r} names no character")
        return chr(value)

    return _ESCAPE.sub(one, text)


def escape(text: str) -> str:
    """A lexical form as canonical N-Triples writes it between quotes; other control characters and the line and
    paragraph separators as ``\\uXXXX``, so the label stays one line and one TSV field."""
    return _TO_ESCAPE.sub(lambda m: _ESCAPES.get(m.group(), f"\\u{ord(m.group()):04X}"), text)



def _decode(path: Path, data: bytes, first: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first + data.count(b"\n", 0, e.start)
        raise DataError(f"{path}:{line}: undecodable bytes (not UTF-8)") from None


def ntriples_tokens(path: Path, quads: bool,
                    chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(terms (m, 3 or 4) in N-Triples syntax, line numbers (m,))`` of the triples of an N-Triples (``quads``:
    N-Quads, graph "" for the default graph) file, a chunk of lines at a time."""
    pattern = LINES[quads]
    for first, data in iter_line_chunks(path, chunk_bytes):
        text = _decode(path, data, first)
        found = pattern.findall(text)
        if len(found) != text.count("\n"):
            raise _bad_line(path, text, first, quads)
        if not found:
            continue
        rows = np.array(found, dtype=object).reshape(len(found), -1)
        filled = np.flatnonzero(rows[:, 0] != "")
        if len(filled):
            yield rows[filled], first + filled


def _bad_line(path: Path, text: str, first: int, quads: bool) -> DataError:
    """The DataError of the first line of ``text`` that the grammar does not match, saying what is wrong."""
    lines = text.split("\n")
    i = next(i for i, line in enumerate(lines) if not LINES[quads].fullmatch(line + "\n"))
    shown = lines[i] if len(lines[i]) <= 200 else lines[i][:200] + "..."
    return DataError(f"{path}:{first + i}: {line_problem(lines[i], quads)}: {shown!r}")


_TERM_AT = {"iri": re.compile(IRI), "blank node": re.compile(BNODE), "literal": re.compile(LITERAL)}


def line_problem(line: str, quads: bool) -> str:
    """What is wrong with a line of N-Triples (N-Quads) that the grammar does not match, term by term."""
    kinds: list[str] = []
    i = 0
    while True:
        while i < len(line) and line[i] in " \t":
            i += 1
        if i == len(line) or line[i] == "#":
            return "missing final '.'" if kinds else "malformed line"
        if line[i] == ".":
            rest = line[i + 1 :].strip(" \t")
            if rest and not rest.startswith("#"):
                return f"unexpected {rest[:20]!r} after the final '.'"
            return _shape_problem(kinds, quads)
        kind, end, problem = _term_at(line, i)
        if problem:
            return problem
        kinds.append(kind)
        i = end


def _term_at(line: str, i: int) -> tuple[str, int, str | None]:
    """``(kind, end, problem)`` of the term that starts at ``line[i]``."""
    char = line[i]
    kind = {"<": "iri", "_": "blank node", '"': "literal"}.get(char)
    if kind is None:
        token = re.split(r"[ \t]", line[i:], maxsplit=1)[0]
        if char == "'":
            return "", 0, "a literal in single quotes (N-Triples takes double quotes)"
        if ":" in token:
            return "", 0, f"prefixed name {token!r} (N-Triples takes full IRIs in <...>; Turtle: format='turtle')"
        return "", 0, f"unexpected {token[:20]!r} where a term should be"
    if line.startswith("<<", i):
        return "", 0, "a quoted triple (RDF-star), which kgem does not read"
    match = _TERM_AT[kind].match(line, i)
    if match is None:
        return "", 0, _term_problem(kind, line, i)
    if kind == "literal" and line.startswith(("@", "^^"), match.end()):  # the literal ends where its suffix breaks
        return "", 0, _suffix_problem(line[match.end() :])
    return kind, match.end(), None


def _term_problem(kind: str, line: str, i: int) -> str:
    if kind == "blank node":
        return "bad blank node label" if line.startswith("_:", i) else "unexpected '_' where a term should be"
    if kind == "iri":
        end = line.find(">", i)
        if end < 0:
            return "unterminated IRI (no closing '>')"
        body = line[i + 1 : end]
        bad = re.search(r"\\(?!u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8})", body)
        if bad:
            return f"bad escape {body[bad.start() : bad.start() + 2]!r} in an IRI"
        char = BAD_IRI.search(body)
        return f"character {char.group()!r} in an IRI" if char else "malformed IRI"
    j = i + 1
    while j < len(line) and line[j] != '"':
        if line[j] == "\\":
            if not re.match(r'\\(?:[tbnrf"\'\\]|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8})', line[j:]):
                return f"bad escape {line[j : j + 2]!r} in a literal"
            j += 1
        elif line[j] == "\r":
            return "a carriage return in a literal (write it \\r)"
        j += 1
    return "unterminated literal (no closing '\"')" if j >= len(line) else "malformed literal"


def _suffix_problem(after: str) -> str:
    """What is wrong after a literal's closing quote: its language tag or datatype."""
    if after.startswith("@"):
        tag = re.split(r"[ \t]", after[1:], maxsplit=1)[0].removesuffix(".")
        return f"bad language tag {tag!r}"
    return "a datatype must be an IRI in <...>"


def _shape_problem(kinds: list[str], quads: bool) -> str:
    """What is wrong with the terms of a line ending in '.' that the grammar does not match."""
    most = 4 if quads else 3
    if len(kinds) < 3:
        return f"expected subject, predicate and object, found {len(kinds)} term{'s' if len(kinds) != 1 else ''}"
    if len(kinds) > most:
        hint = "" if quads else " (a graph term is N-Quads: format='nquads')"
        return f"{len(kinds)} terms, at most {most}{hint}"
    if kinds[0] == "literal":
        return "a literal as subject"
    if kinds[1] != "iri":
        return f"a {kinds[1]} as predicate (only an IRI can be one)"
    if len(kinds) == 4 and kinds[3] == "literal":
        return "a literal as graph"
    return "malformed line"


