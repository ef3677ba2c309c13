"""Prefix maps: IRIs shortened into labels (``rdf:type``) and labels expanded back, unambiguously for any map.

An IRI's label is ``prefix:local`` when a namespace of the map starts it (the longest such namespace), otherwise the
IRI itself, written ``<IRI>`` only where it would read as something else: when its text before the first ``:`` is a
prefix of the map, or it starts with ``<``, ``"`` or ``_:`` (how the labels of blank nodes and literals start). A
prefix name starts with a letter or is empty, so ``Prefixes.iri`` inverts ``Prefixes.shorten`` for every IRI.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TypeAlias

import numpy as np

from kgem.atomic import atomic_write
from kgem.data.ntriples import BAD_IRI
from kgem.errors import DataError

WELL_KNOWN = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "dcterms": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "schema": "http://schema.org/",
    "prov": "http://www.w3.org/ns/prov#",
    "geo": "http://www.w3.org/2003/01/geo/wgs84_pos#",
    "dbo": "http://dbpedia.org/ontology/",
    "dbr": "http://dbpedia.org/resource/",
    "dbp": "http://dbpedia.org/property/",
    "wd": "http://www.wikidata.org/entity/",
    "wdt": "http://www.wikidata.org/prop/direct/",
    "p": "http://www.wikidata.org/prop/",
    "ps": "http://www.wikidata.org/prop/statement/",
    "pq": "http://www.wikidata.org/prop/qualifier/",
    "yago": "http://yago-knowledge.org/resource/",
    "fb": "http://rdf.freebase.com/ns/",
    "obo": "http://purl.obolibrary.org/obo/",
}

# a prefix map as the readers take it: a mapping, a prefixes.tsv file, or None for WELL_KNOWN
PrefixSource: TypeAlias = Mapping[str, str] | str | os.PathLike[str] | None
_PREFIX_NAME = re.compile(r"(?:[^\W\d_](?:[\w.\-]*[\w\-])?)?")


def prefix_problem(prefix: str, namespace: str) -> str | None:
    """Why ``prefix -> namespace`` cannot be in a prefix map, or None. A prefix starts with a letter (or is empty):
    never ``_``, ``<`` or ``"``, which start the labels of blank nodes, bracketed IRIs and literals."""
    if not isinstance(prefix, str) or not _PREFIX_NAME.fullmatch(prefix):
        return "a prefix is a name that starts with a letter (letters, digits, '_', '-', '.'), or is empty"
    if not isinstance(namespace, str) or not namespace:
        return "the namespace must be a non-empty IRI"
    bad = BAD_IRI.search(namespace)
    return f"the namespace holds {bad.group()!r}, which no IRI may hold" if bad else None


class Prefixes(Mapping[str, str]):
    """A prefix map (prefix -> namespace IRI, in order) that shortens IRIs into labels and expands labels back.

    Where two prefixes have the same namespace, the first one shortens. Default: ``WELL_KNOWN`` (rdf, rdfs, owl, xsd,
    skos, dc, dcterms, foaf, schema, prov, geo, dbo, dbr, dbp, wd, wdt, p, ps, pq, yago, fb, obo).
    """

    def __init__(self, namespaces: Mapping[str, str] | None = None, *, source: str = "prefix map") -> None:
        items = dict(WELL_KNOWN if namespaces is None else namespaces)
        for prefix, namespace in items.items():
            problem = prefix_problem(prefix, namespace)
            if problem:
                raise DataError(f"{source}: {prefix!r} -> {namespace!r}: {problem}")
        self._namespaces = items
        self._prefix_of: dict[str, str] = {}
        for prefix, namespace in items.items():
            self._prefix_of.setdefault(namespace, prefix)

    def __getitem__(self, prefix: str) -> str:
        return self._namespaces[prefix]

    def __iter__(self) -> Iterator[str]:
        return iter(self._namespaces)

    def __len__(self) -> int:
        return len(self._namespaces)

    def __repr__(self) -> str:
        return f"Prefixes({len(self)} prefixes: {', '.join(list(self)[:8])}{', ...' if len(self) > 8 else ''})"

    def with_declared(self, declared: Mapping[str, str]) -> Prefixes:
        """This map with a file's own declarations first (they win a prefix both name, and shorten first); a
        declaration that cannot be in a map (``prefix_problem``) is left out."""
        usable = {p: ns for p, ns in declared.items() if prefix_problem(p, ns) is None}
        return Prefixes({**usable, **{p: ns for p, ns in self.items() if p not in usable}})

    def shorten(self, iris: np.ndarray | list[str], *, bare: bool = True) -> np.ndarray:
        """The labels of ``iris`` (see the module's doc). ``bare=False``: an IRI no namespace starts is always
        written ``<IRI>`` (as datatypes in literal labels are).

        The IRIs are sorted once; those a namespace starts are then one run of the sorted order, found by binary
        search, and a longer namespace (searched later) takes over the IRIs of a shorter one it extends."""
        texts = np.asarray(iris, dtype=object)
        order = np.argsort(texts, kind="stable")
        ranked = texts[order]
        owner = np.full(len(texts), -1)
        namespaces = sorted(self._prefix_of, key=len)
        for k, namespace in enumerate(namespaces):
            # every text in [namespace, namespace + U+10FFFF) starts with namespace
            lo, hi = np.searchsorted(ranked, [namespace, namespace + "\U0010ffff"])
            owner[lo:hi] = k
        labels = texts.copy()
        for k in np.unique(owner[owner >= 0]):
            rows = order[owner == k]
            prefix, cut = self._prefix_of[namespaces[k]] + ":", len(namespaces[k])
            labels[rows] = [prefix + text[cut:] for text in texts[rows]]
        rest = order[owner < 0]
        labels[rest] = [text if bare and self.bare(text) else f"<{text}>" for text in texts[rest]]
        return labels

    def bare(self, iri: str) -> bool:
        """Whether an IRI no namespace starts can stand as its own label: not empty, not starting as a bracketed IRI,
        a literal or a blank node does, and no prefix of the map before its first ``:``."""
        scheme, colon, _ = iri.partition(":")
        return bool(iri) and not iri.startswith(("<", '"', "_:")) and not (colon and scheme in self._namespaces)

    def iri(self, label: str) -> str:
        """The IRI of an IRI's label (the inverse of ``shorten``)."""
        if label.startswith("<") and label.endswith(">") and len(label) > 1:
            return label[1:-1]
        prefix, colon, local = label.partition(":")
        if colon and prefix in self._namespaces:
            return self._namespaces[prefix] + local
        return label

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``prefix<TAB>namespace`` lines (atomic), read back by ``Prefixes.load``."""
        with atomic_write(path) as f:
            f.write("".join(f"{prefix}\t{namespace}\n" for prefix, namespace in self.items()))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Prefixes:
        """Read a file of ``prefix<TAB>namespace`` lines (as ``save`` writes them); a bad line is a DataError."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such file (a prefix map: prefix<TAB>namespace lines)")
        items: dict[str, str] = {}
        with open(path, encoding="utf-8", newline="") as f:
            for lineno, line in enumerate(f, start=1):
                fields = line.rstrip("\r\n").split("\t")
                problem = "expected prefix<TAB>namespace" if len(fields) != 2 else prefix_problem(*fields)
                if problem is None and fields[0] in items:
                    problem = f"prefix {fields[0]!r} again"
                if problem:
                    raise DataError(f"{path}:{lineno}: {problem}: {line.rstrip()!r}")
                items[fields[0]] = fields[1]
        return cls(items, source=str(path))


def as_prefixes(prefixes: PrefixSource) -> Prefixes:
    """A prefix map from a mapping, a ``prefixes.tsv`` file, or None (``WELL_KNOWN``)."""
    if isinstance(prefixes, Prefixes):
        return prefixes
    if isinstance(prefixes, str | os.PathLike):
        return Prefixes.load(prefixes)
    return Prefixes(prefixes)
