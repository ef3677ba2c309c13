"""RDF in and out: N-Triples and N-Quads by kgem's streaming reader (``kgem.data.ntriples``), Turtle and RDF/XML
through rdflib (an optional extra: ``pip install 'kgem[rdf]'``), and triples written back as N-Triples.

Terms become labels once per distinct term of a chunk (pandas' factorize), never per triple. Each RDF term is one
label (a TSV field) that names it unambiguously, so the label gives back the term:

- an IRI: shortened by a prefix map (``kgem.data.prefixes``): ``rdf:type`` for
  ``http://www.w3.org/1999/02/22-rdf-syntax-ns#type``, ``http://example.org/x`` where no namespace starts it, and
  ``<rdf:x>`` for the IRI ``rdf:x`` (scheme ``rdf``), which would otherwise read as a prefixed name;
- a blank node: ``_:label``, N-Triples' labels as written (a dump split into files keeps its nodes); rdflib's
  parsers of Turtle and RDF/XML keep no labels, so their blank nodes are ``_:b0``, ``_:b1``, ... in document order;
- a literal: its N-Triples form with the escapes of canonical N-Triples (``\\b \\t \\n \\f \\r \\" \\\\``, and
  ``\\uXXXX`` for other control characters and the line separators, so a label is always one TSV field), a
  lower-case language tag, and its datatype's label as a prefixed name or ``<IRI>``: ``"chat"@fr``,
  ``"5"^^xsd:integer``; ``xsd:string`` is left out, as RDF 1.1 does.

The kinds start differently (``_:``, ``"``, an IRI's label never with either), so the writer tells them apart.

Literals (``literals``): ``drop`` (default) leaves out the triples whose object is a literal, counted in a log line;
``entities`` keeps them, the literal an entity labelled as above; ``attributes`` turns numeric literals (the XSD
numeric datatypes, and plain literals that read as numbers with ``plain_numbers=True``) into rows ``(entity,
attribute, value)``, the frame ``kgem.data.literals.literals_from_df`` reads for the literal models, and drops the
other literal triples.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import urllib.parse
import warnings
import xml.sax
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from kgem.atomic import atomic_write
from kgem.data.literals import Literals, literals_from_df
from kgem.data.ntriples import BAD_IRI, BNODE_LABEL, LITERAL_LABEL, escape, ntriples_tokens, unescape
from kgem.data.prefixes import WELL_KNOWN, Prefixes, PrefixSource, as_prefixes
from kgem.data.readers import CHUNK_BYTES, open_binary
from kgem.data.triples import OnDuplicates, OnUnseen, Triples, triples_from_labels
from kgem.data.vocab import Vocabulary
from kgem.errors import ConfigError, DataError

log = logging.getLogger("kgem")

FORMATS = ("ntriples", "nquads", "turtle", "rdfxml")
SUFFIX_FORMATS = {".nt": "ntriples", ".nq": "nquads", ".ttl": "turtle", ".rdf": "rdfxml", ".owl": "rdfxml",
                  ".xml": "rdfxml"}
SUFFIXES = tuple(suffix + gz for suffix in SUFFIX_FORMATS for gz in ("", ".gz"))
RDFLIB_FORMATS = {"ntriples": "nt", "nquads": "nquads", "turtle": "turtle", "rdfxml": "xml"}
LiteralMode = Literal["drop", "entities", "attributes"]
LITERAL_MODES = ("drop", "entities", "attributes")
Engine = Literal["auto", "kgem", "rdflib"]
# options of ``read_rdf`` that Dataset.from_files and from_split pass on (the others are the TSV readers')
READ_OPTIONS = ("format", "literals", "plain_numbers", "prefixes", "engine", "chunk_bytes")
# the TSV readers' options, as they are when not set: an RDF file is read with these only
TSV_DEFAULTS: dict[str, Any] = {"header": False, "extra_columns": "error", "quotechar": None, "delimiter": None,
                                "edge_weights": None, "columns": (0, 1, 2)}

XSD = WELL_KNOWN["xsd"]
XSD_STRING = XSD + "string"
NUMERIC_TYPES = frozenset(XSD + name for name in (
    "integer", "decimal", "float", "double", "long", "int", "short", "byte", "nonNegativeInteger", "positiveInteger",
    "negativeInteger", "nonPositiveInteger", "unsignedLong", "unsignedInt", "unsignedShort", "unsignedByte"))
_LITERAL_PARTS = r'^"(.*)"(?:@(.+)|\^\^<(.*)>)?$'  # of a term the grammar matched: the last '"' closes it


def rdf_format(path: str | os.PathLike[str], format: str | None = None) -> str | None:  # noqa: A002 - data.format
    """The RDF syntax to read ``path`` in: ``format`` if given (checked), else the one its suffix names (``.nt``,
    ``.nq``, ``.ttl``, ``.rdf``/``.owl``/``.xml``, each optionally ``.gz``); None for a file that is not RDF."""
    if format is not None:
        if format not in FORMATS:
            raise DataError(f"unknown RDF format {format!r}; choose one of {', '.join(FORMATS)}")
        return format
    name = Path(path).name.lower().removesuffix(".gz")
    return next((fmt for suffix, fmt in SUFFIX_FORMATS.items() if name.endswith(suffix)), None)


def require_rdflib(what: str) -> Any:
    """The rdflib module, or a one-line error naming the extra that installs it."""
    try:
        import rdflib
    except ImportError as e:
        raise ConfigError(f"reading {what} needs rdflib, which is not installed: pip install 'kgem[rdf]'") from e
    return rdflib


# ---------------------------------------------------------------------------------------------------- terms


def _decoded(texts: pd.Series, where: Any, what: str) -> pd.Series:
    """``texts`` with their escapes decoded (only those holding a backslash are touched)."""
    escaped = np.flatnonzero(texts.str.contains("\\", regex=False).to_numpy(dtype=bool))
    if not len(escaped):
        return texts
    values = texts.to_numpy(dtype=object, copy=True)
    for i in escaped:
        try:
            values[i] = unescape(values[i])
        except ValueError as e:
            raise DataError(f"{where(i)}: {e} (in the {what} {texts.iloc[i]!r})") from None
    return pd.Series(values, index=texts.index, dtype=object)


def _iris(bodies: pd.Series, where: Any) -> pd.Series:
    """IRIs from the text between ``<`` and ``>``: escapes decoded, and one that decodes to a character no IRI may
    hold is an error."""
    iris = _decoded(bodies, where, "IRI")
    if iris is bodies:
        return iris
    for i in np.flatnonzero(iris.str.contains(BAD_IRI).to_numpy(dtype=bool)):
        char = BAD_IRI.search(iris.iloc[i]).group()  # type: ignore[union-attr]
        raise DataError(f"{where(i)}: IRI <{bodies.iloc[i]}> decodes to a character no IRI may hold: {char!r}")
    return iris


@dataclass(frozen=True)
class _Options:
    literals: LiteralMode
    plain_numbers: bool


def _term_labels(terms: np.ndarray, prefixes: Prefixes, options: _Options,
                 where: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For distinct terms in N-Triples syntax: their labels, which are literals, and each numeric literal's value
    (NaN for the others; only with ``literals="attributes"``). A literal's label only with ``literals="entities"``.
    ``where(i)``: the place of term ``i`` in errors."""
    texts = pd.Series(terms, dtype=object)
    first = texts.str.slice(0, 1).to_numpy(dtype=object)
    iri, literal = first == "<", first == '"'
    labels = terms.copy()  # blank nodes (and "": no graph) are their own labels
    values = np.full(len(terms), np.nan)
    if iri.any():
        rows = np.flatnonzero(iri)
        bodies = texts.iloc[rows].str.slice(1, -1)
        labels[rows] = prefixes.shorten(_iris(bodies, lambda i: where(rows[i])).to_numpy(dtype=object))
    if literal.any() and options.literals != "drop":
        rows = np.flatnonzero(literal)
        lexical, language, datatype = _literal_parts(texts.iloc[rows], lambda i: where(rows[i]))
        if options.literals == "entities":
            labels[rows] = _literal_labels(lexical, language, datatype, prefixes)
        else:
            numeric = datatype.isin(list(NUMERIC_TYPES))
            if options.plain_numbers:
                numeric |= datatype.isna() & language.isna()
            number = pd.to_numeric(lexical.str.strip(), errors="coerce").to_numpy(dtype=np.float64)
            values[rows] = np.where(numeric.to_numpy(dtype=bool), number, np.nan)
    return labels, literal, values


def _literal_parts(texts: pd.Series, where: Any) -> tuple[pd.Series, pd.Series, pd.Series]:
    """The decoded lexical form, language tag (lower case) and datatype IRI (None for xsd:string) of literals in
    N-Triples syntax."""
    parts = texts.str.extract(_LITERAL_PARTS, flags=re.DOTALL)
    lexical = _decoded(parts[0], where, "literal")
    language = parts[1].str.lower()
    datatype = _iris(parts[2].fillna(""), where)
    datatype = datatype.where((datatype != "") & (datatype != XSD_STRING), None)
    return lexical, language, datatype


def _literal_labels(lexical: pd.Series, language: pd.Series, datatype: pd.Series, prefixes: Prefixes) -> np.ndarray:
    body = '"' + lexical.map(escape) + '"'
    suffix = pd.Series("", index=lexical.index, dtype=object)
    typed = datatype.notna().to_numpy(dtype=bool)
    if typed.any():
        suffix[typed] = "^^" + pd.Series(prefixes.shorten(datatype[typed].to_numpy(dtype=object), bare=False),
                                         index=datatype.index[typed], dtype=object)
    tagged = language.notna().to_numpy(dtype=bool)
    suffix[tagged] = "@" + language[tagged]
    return (body + suffix).to_numpy(dtype=object)


def ntriples_term(label: str, prefixes: Prefixes) -> str:
    """The N-Triples term of a label (the inverse of the reader's labels); a label that names no term N-Triples can
    write (a bad escape, an IRI with a space, ...) is a DataError."""
    if label.startswith("_:"):
        if not BNODE_LABEL.fullmatch(label):
            raise DataError(f"label {label!r} is not a blank node label N-Triples can write")
        return label
    if label.startswith('"'):
        match = LITERAL_LABEL.fullmatch(label)
        if match is None:
            raise DataError(f"label {label!r} is not a literal N-Triples can write (its quotes or escapes)")
        body, language, datatype = match.groups()
        if language:
            return f'"{body}"@{language}'
        if datatype is None:
            return f'"{body}"'
        return f'"{body}"^^{_iri_term(datatype, prefixes)}'
    return _iri_term(label, prefixes)


def _iri_term(label: str, prefixes: Prefixes) -> str:
    iri = prefixes.iri(label)
    bad = BAD_IRI.search(iri)
    if bad or not iri:
        problem = f"it holds {bad.group()!r}" if bad else "it is empty"
        raise DataError(f"label {label!r} is not an IRI N-Triples can write ({problem})")
    return f"<{iri}>"


# ---------------------------------------------------------------------------------------------------- rdflib


def rdflib_tokens(path: Path, fmt: str) -> tuple[np.ndarray, dict[str, str]]:
    """The triples of ``path`` parsed by rdflib, in document order and with duplicates, as terms in N-Triples
    syntax ``(n, 3)`` (``(n, 4)`` for N-Quads), and the prefixes the file declares. Literals are kept as written
    (rdflib's normalisation of lexical forms is off while it parses)."""
    rdflib = require_rdflib({"turtle": "Turtle", "rdfxml": "RDF/XML"}.get(fmt, f"{fmt} with engine='rdflib'"))
    from rdflib.plugins.stores.memory import Memory

    class Recorder(Memory):
        """Keeps each triple the parser adds, in order, and stores nothing."""

        def __init__(self) -> None:
            super().__init__()
            self.added: list[tuple[Any, ...]] = []

        def add(self, triple: tuple[Any, Any, Any], context: Any = None, quoted: bool = False) -> None:
            self.added.append((*triple, getattr(context, "identifier", None)))

    store = Recorder()
    quads = fmt == "nquads"
    graph = rdflib.Dataset(store=store) if quads else rdflib.Graph(store=store, bind_namespaces="none")
    blanks: dict[Any, str] = {}
    context: dict[str, Any] = {}  # label -> rdflib's BNode, where the syntax has labels
    args: dict[str, Any] = {"bnode_context": context} if fmt in ("ntriples", "nquads") else {}
    normalize, rdflib.NORMALIZE_LITERALS = rdflib.NORMALIZE_LITERALS, False
    try:
        with open_binary(path) as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # rdflib's N-Quads parser calls its own old names
            graph.parse(source=f, format=RDFLIB_FORMATS[fmt], publicID=base_iri(path), **args)
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e}") from e
    except (SyntaxError, ValueError, xml.sax.SAXException, rdflib.exceptions.Error) as e:
        if fmt in ("ntriples", "nquads"):  # rdflib names no line: kgem's reader finds it
            for _ in ntriples_tokens(path, fmt == "nquads"):
                pass
        raise rdflib_error(path, fmt, e) from None
    finally:
        rdflib.NORMALIZE_LITERALS = normalize
    if "bnode_context" in args:
        blanks = {node: f"_:{label}" for label, node in context.items()}
    default = getattr(rdflib.graph, "DATASET_DEFAULT_GRAPH_ID", None)
    cache: dict[Any, str] = {}

    def token(term: Any) -> str:
        found = cache.get(term)
        if found is None:
            found = cache[term] = _rdflib_term(path, term, blanks, rdflib)
        return found

    rows: list[tuple[str, ...]]
    if quads:
        rows = [(token(s), token(p), token(o), "" if g == default else token(g)) for s, p, o, g in store.added]
    else:
        rows = [(token(s), token(p), token(o)) for s, p, o, _ in store.added]
    declared = {str(prefix): str(namespace) for prefix, namespace in graph.namespaces()}
    return np.array(rows, dtype=object).reshape(len(rows), 4 if quads else 3), declared


def _rdflib_term(path: Path, term: Any, blanks: dict[Any, str], rdflib: Any) -> str:
    if isinstance(term, rdflib.BNode):
        return blanks.setdefault(term, f"_:b{len(blanks)}")
    if isinstance(term, rdflib.URIRef):
        bad = BAD_IRI.search(str(term))
        if bad:
            raise DataError(f"{path}: IRI {str(term)!r} holds {bad.group()!r}, which no IRI may hold")
        return f"<{term}>"
    if isinstance(term, rdflib.Literal):
        text = f'"{escape(str(term))}"'
        if term.language:
            return f"{text}@{term.language}"
        return f"{text}^^{_rdflib_term(path, term.datatype, blanks, rdflib)}" if term.datatype else text
    raise DataError(f"{path}: {type(term).__name__} {term!r} is not an RDF term kgem reads")


def base_iri(path: Path) -> str:
    """What relative IRIs in a file resolve against: ``file:///`` and its name (not its folder, so the labels are
    the same wherever the file is)."""
    return "file:///" + urllib.parse.quote(path.name)


def rdflib_error(path: Path, fmt: str, error: Exception) -> DataError:
    """rdflib's parse error as one line naming ``file:line`` where rdflib says the line."""
    line: int | None = None
    why = str(error).strip().split("\n")[0]
    if isinstance(getattr(error, "lines", None), int):  # notation3's BadSyntax: lines counts from 0
        line, why = error.lines + 1, getattr(error, "_why", why)  # type: ignore[attr-defined]
    elif isinstance(error, xml.sax.SAXParseException):
        line, why = error.getLineNumber(), error.getMessage()
    else:
        found = re.search(r":(\d+):\d+: (.*)", why)
        if found:
            line, why = int(found.group(1)), found.group(2)
    where = f"{path}:{line}" if line else str(path)
    return DataError(f"{where}: not valid {dict(zip(FORMATS, ('N-Triples', 'N-Quads', 'Turtle', 'RDF/XML')))[fmt]}"
                     f": {why}")


# ---------------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class RdfData:
    """What ``parse_rdf`` reads from a file: ``triples``, labels in columns head, relation, tail (and graph, "" for
    the default graph, with ``graphs=True``); ``attributes``, numeric literals as columns entity, attribute, value
    (with ``literals="attributes"``); and the prefix map that shortened the labels."""

    triples: pd.DataFrame
    attributes: pd.DataFrame
    prefixes: Prefixes
    source: str


@dataclass(frozen=True)
class RdfTriples:
    """What ``read_rdf`` reads from a file: the ``Triples``, the numeric ``attributes`` (entity, attribute, value:
    ``literals_from_df`` reads them) and the ``prefixes`` that shortened the labels."""

    triples: Triples
    attributes: pd.DataFrame
    prefixes: Prefixes

    def literals(self, **options: Any) -> Literals:
        """The attributes as the matrix the literal models take (``kgem.data.literals.literals_from_df``)."""
        return literals_from_df(self.attributes, self.triples.entities, source=self.triples.source, **options)


class _Reading:
    """One file read into label chunks; counts what it drops and collects the attributes on the way."""

    def __init__(self, path: Path, fmt: str, options: _Options, prefixes: PrefixSource, engine: Engine,
                 chunk_bytes: int) -> None:
        if options.literals not in LITERAL_MODES:
            raise DataError(f"literals must be one of {', '.join(LITERAL_MODES)}, got {options.literals!r}")
        if engine not in ("auto", "kgem", "rdflib"):
            raise DataError(f"engine must be 'auto', 'kgem' or 'rdflib', got {engine!r}")
        if engine == "kgem" and fmt not in ("ntriples", "nquads"):
            raise DataError(f"{path}: kgem's own reader reads N-Triples and N-Quads; {fmt} needs engine='rdflib'")
        self.path, self.fmt, self.options, self.chunk_bytes = path, fmt, options, chunk_bytes
        self.rdflib = engine == "rdflib" or fmt in ("turtle", "rdfxml")
        self.given = prefixes
        self.prefixes = as_prefixes(prefixes)  # the rdflib path adds the file's own declarations when it parses
        self.attributes: list[pd.DataFrame] = []
        self.count = {"triples": 0, "literal": 0, "numeric": 0, "kept": 0}

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """``(labels (k, 3), graphs (k,) or None)`` a chunk at a time, none empty; a DataError at the end when no
        triple is left."""
        for tokens, lines in self._tokens():
            labels, graphs = self._encode(tokens, lines)
            if len(labels):
                yield labels, graphs
        if not self.count["kept"]:
            if not self.count["triples"]:
                raise DataError(f"{self.path}: no triples in file (it is empty or all comments)")
            raise DataError(f"{self.path}: no triples left: each of its {self.count['triples']} triples has a "
                            f"literal object (literals={self.options.literals!r}); literals='entities' keeps them")

    def _tokens(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        if not self.rdflib:
            yield from ntriples_tokens(self.path, self.fmt == "nquads", self.chunk_bytes)
            return
        tokens, declared = rdflib_tokens(self.path, self.fmt)
        if self.given is None:
            self.prefixes = self.prefixes.with_declared(declared)
        if len(tokens):
            yield tokens, None

    def _encode(self, tokens: np.ndarray, lines: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        flat, uniq = pd.factorize(tokens.ravel())
        codes = flat.reshape(tokens.shape)
        terms = np.asarray(uniq, dtype=object)

        def where(term: int) -> str:
            if lines is None:
                return str(self.path)
            return f"{self.path}:{lines[int(np.flatnonzero((codes == term).any(axis=1))[0])]}"

        labels, literal, values = _term_labels(terms, self.prefixes, self.options, where)
        if literal[codes[:, 0]].any() or literal[codes[:, 1]].any():
            bad = int(codes[:, :2][literal[codes[:, :2]]][0])
            raise DataError(f"{where(bad)}: a literal as subject or predicate: {terms[bad]}")
        objects = literal[codes[:, 2]]
        self.count["triples"] += len(codes)
        self.count["literal"] += int(objects.sum())
        if self.options.literals == "attributes":
            numeric = objects & np.isfinite(values[codes[:, 2]])
            self.count["numeric"] += int(numeric.sum())
            rows = codes[numeric]
            self.attributes.append(pd.DataFrame({"entity": labels[rows[:, 0]], "attribute": labels[rows[:, 1]],
                                                 "value": values[rows[:, 2]]}))
        kept = codes if self.options.literals == "entities" else codes[~objects]
        self.count["kept"] += len(kept)
        return labels[kept[:, :3]], labels[kept[:, 3]] if tokens.shape[1] == 4 else None

    def finish(self) -> pd.DataFrame:
        """Log what was dropped; the attributes, one value per entity and attribute (the first in the file)."""
        literal, numeric, mode = self.count["literal"], self.count["numeric"], self.options.literals
        if literal and mode == "drop":
            log.info("%s: dropped %d of %d triples whose object is a literal (literals='entities' keeps them as "
                     "entities, 'attributes' reads the numeric ones as attributes)", self.path, literal,
                     self.count["triples"])
        elif literal and mode == "attributes":
            log.info("%s: %d of %d literal triples read as numeric attributes, %d dropped (not numeric)", self.path,
                     numeric, literal, literal - numeric)
        frame = (pd.concat(self.attributes, ignore_index=True) if self.attributes
                 else pd.DataFrame({"entity": [], "attribute": [], "value": []}).astype({"value": np.float64}))
        repeats = frame.duplicated(["entity", "attribute"]).to_numpy()
        if repeats.any():
            log.info("%s: %d more values of an entity's attribute dropped (the first value is kept)", self.path,
                     int(repeats.sum()))
            frame = frame[~repeats].reset_index(drop=True)
        return frame


def _reading(path: str | os.PathLike[str], fmt: str | None, literals: LiteralMode, plain_numbers: bool,
             prefixes: PrefixSource, engine: Engine,
             chunk_bytes: int) -> _Reading:
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: no such file")
    fmt = rdf_format(file, fmt)
    if fmt is None:
        raise DataError(f"{file}: cannot tell the RDF syntax from the name; pass format= one of {', '.join(FORMATS)}")
    return _Reading(file, fmt, _Options(literals, plain_numbers), prefixes, engine, chunk_bytes)


def parse_rdf(path: str | os.PathLike[str], *, format: str | None = None,  # noqa: A002 - data.format
              literals: LiteralMode = "drop",
              plain_numbers: bool = False, prefixes: PrefixSource = None,
              graphs: bool = False, engine: Engine = "auto", chunk_bytes: int = CHUNK_BYTES) -> RdfData:
    """Read an RDF file into label frames (see ``RdfData``); the options are ``read_rdf``'s. ``graphs``: keep an
    N-Quads file's graph terms as a column ``graph`` ("" for the default graph)."""
    reading = _reading(path, format, literals, plain_numbers, prefixes, engine, chunk_bytes)
    parts = list(reading.chunks())
    frame = pd.DataFrame(np.concatenate([labels for labels, _ in parts]), columns=["head", "relation", "tail"],
                         dtype=object)
    if graphs:
        frame["graph"] = np.concatenate([np.full(len(labels), "", dtype=object) if graph is None else graph
                                         for labels, graph in parts])
    attributes = reading.finish()
    return RdfData(frame, attributes, reading.prefixes, str(path))


def read_rdf(path: str | os.PathLike[str], *, format: str | None = None,  # noqa: A002 - data.format
             literals: LiteralMode = "drop",
             plain_numbers: bool = False, prefixes: PrefixSource = None,
             entities: Vocabulary | None = None, relations: Vocabulary | None = None, on_unseen: OnUnseen = "drop",
             on_duplicates: OnDuplicates = "keep", engine: Engine = "auto",
             chunk_bytes: int = CHUNK_BYTES) -> RdfTriples:
    """Read an RDF file into ``Triples`` (as ``read_triples`` reads a TSV file), its numeric attributes and the
    prefix map of its labels.

    ``format``: ntriples, nquads, turtle or rdfxml (default: by the file's suffix). ``literals``: drop, entities or
    attributes (see the module's doc); ``plain_numbers``: plain literals that read as numbers are numeric too.
    ``prefixes``: the map that shortens IRIs (a mapping, or a ``prefixes.tsv`` file); default ``WELL_KNOWN`` plus
    the prefixes a Turtle or RDF/XML file declares. ``engine``: ``auto`` (kgem's streaming reader for N-Triples and
    N-Quads, rdflib for the others) or ``rdflib`` for every syntax. ``entities``, ``relations``, ``on_unseen`` and
    ``on_duplicates`` as ``read_triples`` takes them. An N-Quads file's graph terms are left out (``parse_rdf``
    keeps them)."""
    reading = _reading(path, format, literals, plain_numbers, prefixes, engine, chunk_bytes)
    triples = triples_from_labels((labels for labels, _ in reading.chunks()), str(path), entities=entities,
                                  relations=relations, on_unseen=on_unseen, on_duplicates=on_duplicates)
    return RdfTriples(triples, reading.finish(), reading.prefixes)


def read_rdf_literals(path: str | os.PathLike[str], entities: Vocabulary, *,
                      format: str | None = None,  # noqa: A002 - data.format
                      plain_numbers: bool = False, prefixes: PrefixSource = None,
                      **options: Any) -> Literals:
    """The numeric literals of an RDF file as the attribute matrix of the literal models over ``entities``
    (``options``: ``literals_from_df``'s ``on_unknown`` and ``normalize``). The labels must be shortened as the
    dataset's were: the same file, or one with the same prefixes."""
    data = parse_rdf(path, format=format, literals="attributes", plain_numbers=plain_numbers, prefixes=prefixes)
    if not len(data.attributes):
        raise DataError(f"{path}: no numeric literals (xsd:integer, xsd:decimal, xsd:double, ...) to read as "
                        f"attributes{'' if plain_numbers else '; plain_numbers=True reads plain ones too'}")
    return literals_from_df(data.attributes, entities, source=str(path), **options)


def rdf_options(path: str | os.PathLike[str], options: dict[str, Any]) -> dict[str, Any] | None:
    """``read_rdf``'s options out of the reader ``options`` a dataset passes on, when ``path`` is RDF (by
    ``format`` or suffix); None when it is not. A TSV reader's option set for an RDF file, or the other way round,
    is an error: it would be ignored."""
    fmt = rdf_format(path, options.get("format"))
    rdf = {key: value for key, value in options.items() if key in READ_OPTIONS}
    rest = {key: value for key, value in options.items() if key not in READ_OPTIONS}
    if fmt is None:
        if rdf:
            raise DataError(f"{path}: not an RDF file (by its suffix), but RDF options were given: "
                            f"{', '.join(sorted(rdf))}; pass format='ntriples' (or turtle, ...) to read it as RDF")
        return None
    unused = sorted(key for key, value in rest.items() if key not in TSV_DEFAULTS or value != TSV_DEFAULTS[key])
    if unused:
        raise DataError(f"{path}: RDF has no columns; {', '.join(unused)} apply to delimited files only")
    return {**rdf, "format": fmt}


# ---------------------------------------------------------------------------------------------------- writing


def write_ntriples(triples: Triples | pd.DataFrame, path: str | os.PathLike[str],
                   prefixes: PrefixSource = None, *,
                   columns: tuple[str, str, str] | None = None) -> Path:
    """Write triples (``Triples``, or a DataFrame of labels such as predictions) as N-Triples, one line each in
    order, IRIs expanded by ``prefixes`` (default ``WELL_KNOWN``: give the map the labels were read with,
    ``RdfTriples.prefixes`` or ``model_prefixes``), literals with their escapes. ``columns``: the head, relation
    and tail columns, by default ``head`` or else ``query_head`` (and so on), as predictions name them. A ``.gz``
    path is gzipped. A label that names no term N-Triples can write, a literal as subject or a non-IRI as
    predicate, is a DataError."""
    frame = triples.to_df() if isinstance(triples, Triples) else triples
    names = list(columns) if columns is not None else [
        name if name in frame.columns or f"query_{name}" not in frame.columns else f"query_{name}"
        for name in ("head", "relation", "tail")]
    missing = [column for column in names if column not in frame.columns]
    if missing:
        raise DataError(f"no column(s) {missing} of labels to write as N-Triples; the frame has {list(frame.columns)}")
    labels = frame[names].astype(str).to_numpy(dtype=object)
    mapping = as_prefixes(prefixes)
    codes, uniq = pd.factorize(labels.ravel())
    terms = np.array([ntriples_term(str(label), mapping) for label in uniq], dtype=object)
    rows = terms[codes].reshape(labels.shape)
    _check_positions(rows, labels)
    s, p, o = (pd.Series(rows[:, i], dtype=object) for i in range(3))
    text = "".join((s + " " + p + " " + o + " .\n").to_numpy(dtype=object))
    target = Path(path)
    with atomic_write(target, "wb", encoding=None) as f:
        data = text.encode("utf-8")
        f.write(gzip.compress(data, mtime=0) if target.name.endswith(".gz") else data)
    return target


def _check_positions(rows: np.ndarray, labels: np.ndarray) -> None:
    """A literal as subject, or anything but an IRI as predicate, cannot be written: a DataError naming the row."""
    first = pd.DataFrame(rows[:, :2], dtype=object).apply(lambda column: column.str.slice(0, 1)).to_numpy()
    bad = np.flatnonzero((first[:, 0] == '"') | (first[:, 1] != "<"))
    if len(bad):
        row = int(bad[0])
        problem = "a literal as subject" if first[row, 0] == '"' else f"relation {labels[row, 1]!r} is not an IRI"
        raise DataError(f"row {row}: {problem}; N-Triples cannot write {labels[row].tolist()}")


def model_prefixes(extra: Mapping[str, Any]) -> Prefixes:
    """The prefix map a model was trained with, from its saved ``extra`` (``LoadedModel.extra``): the pipeline keeps
    a dataset read from RDF's map there; ``WELL_KNOWN`` for a model without one."""
    saved = extra.get("prefixes")
    return Prefixes(saved, source="the model's saved prefixes") if isinstance(saved, Mapping) else Prefixes()

