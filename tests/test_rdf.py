"""RDF input and output (kgem.data.rdf): one small graph written by hand in N-Triples, N-Quads, Turtle and RDF/XML
gives the same triples; malformed lines name file:line; literal options; prefixes shortened and restored; the
streaming reader against rdflib; datasets, configs and training from RDF files."""

from __future__ import annotations

import gzip
import logging
import random
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kgem
from kgem.cli import main
from kgem.configs import RDF_FORMATS, DataConfig
from kgem.data import Dataset
from kgem.data.prefixes import WELL_KNOWN, Prefixes
from kgem.data.rdf import FORMATS, model_prefixes, parse_rdf, read_rdf, read_rdf_literals, write_ntriples
from kgem.errors import ConfigError, DataError
from kgem.factory import dataset_from_config, literals_from_config
from kgem.saving import load_model

EX = "http://example.org/"
PREFIXES = {**WELL_KNOWN, "ex": EX}

NTRIPLES = r"""# one small graph, by hand: the same in each syntax below
<http://example.org/alice> <http://xmlns.com/foaf/0.1/knows> <http://example.org/bob> .
<http://example.org/alice>	<http://xmlns.com/foaf/0.1/name>   "Alice"@en .
<http://example.org/alice> <http://xmlns.com/foaf/0.1/name> "Alicia"@ES.

<http://example.org/alice> <http://example.org/motto> "say \"hi\"\n\ttwice \\ \u00E9" . # escapes
<http://example.org/bob> <http://xmlns.com/foaf/0.1/age> "42"^^<http://www.w3.org/2001/XMLSchema#integer> .
<http://example.org/bob> <http://example.org/height> "1.85"^^<http://www.w3.org/2001/XMLSchema#decimal> .
<http://example.org/bob> <http://example.org/city> <http://example.org/Z\u00FCrich> .
<http://example.org/bob> <http://example.org/code> "x1"^^<http://example.org/Code> .
<http://example.org/alice> <http://example.org/friendOf> _:b0 .
_:b0 <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <http://xmlns.com/foaf/0.1/Person> .
_:b0 <http://xmlns.com/foaf/0.1/name> "Carol"^^<http://www.w3.org/2001/XMLSchema#string> .
_:b0 <http://xmlns.com/foaf/0.1/age> "7" .
"""

NQUADS = r"""<http://example.org/alice> <http://xmlns.com/foaf/0.1/knows> <http://example.org/bob> <http://example.org/g1>.
<http://example.org/alice> <http://xmlns.com/foaf/0.1/name> "Alice"@en <http://example.org/g1> .
<http://example.org/alice> <http://xmlns.com/foaf/0.1/name> "Alicia"@es .
<http://example.org/alice> <http://example.org/motto> "say \"hi\"\n\ttwice \\ \u00E9" <http://example.org/g2> .
<http://example.org/bob> <http://xmlns.com/foaf/0.1/age> "42"^^<http://www.w3.org/2001/XMLSchema#integer> .
<http://example.org/bob> <http://example.org/height> "1.85"^^<http://www.w3.org/2001/XMLSchema#decimal> _:g .
<http://example.org/bob> <http://example.org/city> <http://example.org/Zürich> .
<http://example.org/bob> <http://example.org/code> "x1"^^<http://example.org/Code> .
<http://example.org/alice> <http://example.org/friendOf> _:b0 .
_:b0 <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <http://xmlns.com/foaf/0.1/Person> .
_:b0 <http://xmlns.com/foaf/0.1/name> "Carol" .
_:b0 <http://xmlns.com/foaf/0.1/age> "7" .
"""

TURTLE = r"""@prefix ex: <http://example.org/> .
@prefix foaf: <http://xmlns.com/foaf/0.1/> .
# one small graph
ex:alice foaf:knows ex:bob ;
    foaf:name "Alice"@en, "Alicia"@ES ;
    ex:motto "say \"hi\"\n\ttwice \\ \u00E9" ;
    ex:friendOf [ a foaf:Person ; foaf:name "Carol" ; foaf:age "7" ] .
ex:bob foaf:age 42 ;
    ex:height 1.85 ;
    ex:city ex:Zürich ;
    ex:code "x1"^^ex:Code .
"""

RDFXML = """<?xml version="1.0" encoding="utf-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:ex="http://example.org/"
         xmlns:foaf="http://xmlns.com/foaf/0.1/">
  <rdf:Description rdf:about="http://example.org/alice">
    <foaf:knows rdf:resource="http://example.org/bob"/>
    <foaf:name xml:lang="en">Alice</foaf:name>
    <foaf:name xml:lang="ES">Alicia</foaf:name>
    <ex:motto>say "hi"&#10;&#9;twice \\ é</ex:motto>
    <ex:friendOf>
      <foaf:Person>
        <foaf:name>Carol</foaf:name>
        <foaf:age>7</foaf:age>
      </foaf:Person>
    </ex:friendOf>
  </rdf:Description>
  <rdf:Description rdf:about="http://example.org/bob">
    <foaf:age rdf:datatype="http://www.w3.org/2001/XMLSchema#integer">42</foaf:age>
    <ex:height rdf:datatype="http://www.w3.org/2001/XMLSchema#decimal">1.85</ex:height>
    <ex:city rdf:resource="http://example.org/Zürich"/>
    <ex:code rdf:datatype="http://example.org/Code">x1</ex:code>
  </rdf:Description>
</rdf:RDF>
""".replace("\\\\", "\\")

# the graph's labels, by hand: IRIs shortened by PREFIXES, literals in canonical N-Triples with their datatype's label
GRAPH = {
    ("ex:alice", "foaf:knows", "ex:bob"),
    ("ex:alice", "foaf:name", '"Alice"@en'),
    ("ex:alice", "foaf:name", '"Alicia"@es'),
    ("ex:alice", "ex:motto", '"say \\"hi\\"\\n\\ttwice \\\\ é"'),
    ("ex:bob", "foaf:age", '"42"^^xsd:integer'),
    ("ex:bob", "ex:height", '"1.85"^^xsd:decimal'),
    ("ex:bob", "ex:city", "ex:Zürich"),
    ("ex:bob", "ex:code", '"x1"^^ex:Code'),
    ("ex:alice", "ex:friendOf", "_:b0"),
    ("_:b0", "rdf:type", "foaf:Person"),
    ("_:b0", "foaf:name", '"Carol"'),
    ("_:b0", "foaf:age", '"7"'),
}
LITERAL_OBJECTS = 8


def write(path: Path, text: str, *, crlf: bool = False, gz: bool = False) -> Path:
    data = (text.replace("\n", "\r\n") if crlf else text).encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    return {"ntriples": write(tmp_path / "graph.nt", NTRIPLES), "nquads": write(tmp_path / "graph.nq", NQUADS),
            "turtle": write(tmp_path / "graph.ttl", TURTLE), "rdfxml": write(tmp_path / "graph.rdf", RDFXML),
            "ntriples.gz": write(tmp_path / "graph.nt.gz", NTRIPLES, crlf=True, gz=True)}


def triple_set(frame: pd.DataFrame) -> set[tuple[str, str, str]]:
    return set(map(tuple, frame[["head", "relation", "tail"]].to_numpy().tolist()))


@pytest.mark.parametrize("syntax", ["ntriples", "nquads", "turtle", "rdfxml", "ntriples.gz"])
def test_each_syntax_gives_the_same_triples(files, syntax) -> None:
    data = parse_rdf(files[syntax], literals="entities", prefixes=PREFIXES)
    assert len(data.triples) == len(GRAPH)
    assert triple_set(data.triples) == GRAPH


@pytest.mark.parametrize("syntax", ["ntriples", "nquads", "turtle", "rdfxml"])
def test_each_syntax_gives_the_same_triples_object(files, syntax) -> None:
    """The Triples of each syntax: the same vocabularies (sorted labels: the same ids) and the same id triples."""
    reference = read_rdf(files["ntriples"], literals="entities", prefixes=PREFIXES).triples
    triples = read_rdf(files[syntax], literals="entities", prefixes=PREFIXES).triples
    assert triples.entities == reference.entities and triples.relations == reference.relations
    assert {tuple(row) for row in triples.hrt.tolist()} == {tuple(row) for row in reference.hrt.tolist()}


def test_rdflib_engine_reads_ntriples_as_the_streaming_reader_does(files) -> None:
    for syntax in ("ntriples", "nquads"):
        ours = parse_rdf(files[syntax], literals="entities", graphs=syntax == "nquads")
        theirs = parse_rdf(files[syntax], literals="entities", graphs=syntax == "nquads", engine="rdflib")
        pd.testing.assert_frame_equal(ours.triples, theirs.triples)


def test_nquads_graph_terms_dropped_or_kept(files) -> None:
    assert list(parse_rdf(files["nquads"]).triples.columns) == ["head", "relation", "tail"]
    kept = parse_rdf(files["nquads"], literals="entities", graphs=True, prefixes=PREFIXES).triples
    assert kept["graph"].tolist() == ["ex:g1", "ex:g1", "", "ex:g2", "", "_:g", "", "", "", "", "", ""]


def test_turtle_and_rdfxml_shorten_with_their_own_prefixes(files) -> None:
    """Without a given map, the file's own @prefix (xmlns) declarations join the well-known ones, and the map is
    returned with the triples."""
    for syntax in ("turtle", "rdfxml"):
        read = read_rdf(files[syntax], literals="entities")
        assert read.prefixes["ex"] == EX and read.prefixes["foaf"] == WELL_KNOWN["foaf"]
        assert "ex:alice" in set(read.triples.entities.labels)
    plain = read_rdf(files["ntriples"]).triples  # N-Triples declares nothing: ex is not well known
    assert "http://example.org/alice" in set(plain.entities.labels)


def test_blank_nodes_from_rdflib_are_numbered_in_document_order(tmp_path) -> None:
    path = write(tmp_path / "b.ttl", "@prefix ex: <http://example.org/> .\n"
                                     "ex:a ex:p [ ex:q ex:b ] .\n[] ex:r ex:a .\n_:named ex:r _:named .\n")
    first = parse_rdf(path).triples
    assert first.to_numpy().tolist() == [["_:b0", "ex:q", "ex:b"], ["ex:a", "ex:p", "_:b0"],
                                         ["_:b1", "ex:r", "ex:a"], ["_:b2", "ex:r", "_:b2"]]
    pd.testing.assert_frame_equal(parse_rdf(path).triples, first)  # rdflib's own ids are random: ours are not


# ---------------------------------------------------------------------------------------------------- errors

GOOD = "<http://a.org/s> <http://a.org/p> <http://a.org/o> .\n"
MALFORMED = [
    ('<http://a.org/s> <http://a.org/p> <http://a.org/o .', "unterminated IRI (no closing '>')"),
    ('<http://a.org/s> <http://a.org/p> <http://a.org/o>', "missing final '.'"),
    ('<http://a.org/s> <http://a.org/p> "x" # comment', "missing final '.'"),
    ('<http://a.org/s\\x41> <http://a.org/p> <http://a.org/o> .', "bad escape '\\\\x' in an IRI"),
    ('<http://a.org/s> <http://a.org/p> "a\\qb" .', "bad escape '\\\\q' in a literal"),
    ('<http://a.org/s> <http://a.org/p> "\\u00G1" .', "bad escape '\\\\u' in a literal"),
    ('"lit" <http://a.org/p> <http://a.org/o> .', "a literal as subject"),
    ('<http://a.org/s> "lit" <http://a.org/o> .', "a literal as predicate"),
    ('<http://a.org/s> _:p <http://a.org/o> .', "a blank node as predicate"),
    ('<http://a.org/s> <http://a.org/p> <http://a.org/o> "lit" .', "4 terms, at most 3 (a graph term is N-Quads"),
    ('<http://a.org/s> <http://a.org/p> .', "expected subject, predicate and object, found 2 terms"),
    ('<http://a b> <http://a.org/p> <http://a.org/o> .', "character ' ' in an IRI"),
    ('<http://a.org/s> <http://a.org/p> "abc .', "unterminated literal (no closing '\"')"),
    ('<http://a.org/s> <http://a.org/p> "abc"@1x .', "bad language tag '1x'"),
    ('<http://a.org/s> <http://a.org/p> "abc"^^xsd:string .', "a datatype must be an IRI in <...>"),
    ("ex:s <http://a.org/p> <http://a.org/o> .", "prefixed name 'ex:s' (N-Triples takes full IRIs"),
    ("<http://a.org/s> <http://a.org/p> 'x' .", "a literal in single quotes"),
    ('<http://a.org/s> <http://a.org/p> <http://a.org/o> . extra', "unexpected 'extra' after the final '.'"),
    ("<< <http://a.org/s> <http://a.org/p> <http://a.org/o> >> <http://a.org/p> <http://a.org/o> .",
     "a quoted triple (RDF-star)"),
    ("_:-x <http://a.org/p> <http://a.org/o> .", "bad blank node label"),
    ('<http://a.org/s> <http://a.org/p> "\\uD800" .', "escape '\\\\uD800' names no character"),
    ('<http://a.org/s\\u0020x> <http://a.org/p> <http://a.org/o> .',
     "IRI <http://a.org/s\\u0020x> decodes to a character no IRI may hold: ' '"),
    ('<http://a.org/s> <http://a.org/p> "a\rb" .', "a carriage return in a literal"),
]


@pytest.mark.parametrize(("line", "problem"), MALFORMED)
def test_a_malformed_line_names_file_line_and_problem(tmp_path, line, problem) -> None:
    path = write(tmp_path / "bad.nt", f"# header comment\n{GOOD}\n{line}\n{GOOD}")
    with pytest.raises(DataError) as error:
        parse_rdf(path, literals="entities")
    assert str(error.value).startswith(f"{path}:4: {problem}")
    assert "\n" not in str(error.value)


def test_the_line_number_counts_across_chunks_and_gzip(tmp_path) -> None:
    path = write(tmp_path / "bad.nt.gz", GOOD * 500 + "<http://a.org/s> <http://a.org/p> <oops .\n" + GOOD,
                 gz=True, crlf=True)
    with pytest.raises(DataError, match=rf"^{path}:501: unterminated IRI"):
        read_rdf(path, chunk_bytes=1000)


def test_nquads_errors(tmp_path) -> None:
    path = write(tmp_path / "bad.nq", GOOD + '<http://a.org/s> <http://a.org/p> <http://a.org/o> "g" .\n')
    with pytest.raises(DataError, match=rf"^{path}:2: a literal as graph"):
        parse_rdf(path)
    path = write(tmp_path / "bad2.nq", GOOD + "<http://a.org/s> <http://a.org/p> <http://a.org/o> <http://g> <x> .\n")
    with pytest.raises(DataError, match=rf"^{path}:2: 5 terms, at most 4"):
        parse_rdf(path)


def test_undecodable_bytes_and_empty_files(tmp_path) -> None:
    path = tmp_path / "bin.nt"
    path.write_bytes(GOOD.encode() + b'<http://a.org/s> <http://a.org/p> "\xff" .\n')
    with pytest.raises(DataError, match=rf"^{path}:2: undecodable bytes"):
        parse_rdf(path)
    with pytest.raises(DataError, match="no triples in file"):
        read_rdf(write(tmp_path / "empty.nt", "# nothing\n\n"))
    with pytest.raises(DataError, match="no triples left: each of its 1 triples has a literal object"):
        read_rdf(write(tmp_path / "lit.nt", '<http://a.org/s> <http://a.org/p> "x" .\n'))


@pytest.mark.parametrize(("name", "text", "where"), [
    ("bad.ttl", "@prefix ex: <http://example.org/> .\nex:a ex:b ex:c .\nex:a ex:b \"x .\n",
     ":3: not valid Turtle: newline found in string literal"),
    ("bad.rdf", '<?xml version="1.0"?>\n<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
                "<rdf:Description rdf:about=\"http://a.org/s\">\n<oops:p>x</oops:p>\n</rdf:Description>\n</rdf:RDF>\n",
     ":4: not valid RDF/XML: unbound prefix"),
    ("bad.xml", '<?xml version="1.0"?>\n<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
                'xmlns:ex="http://example.org/">\n<rdf:Description rdf:about="http://a.org/s">\n'
                '<ex:p rdf:resource="http://a.org/o" rdf:nodeID="n"/>\n</rdf:Description>\n</rdf:RDF>\n',
     ":4: not valid RDF/XML: Property element cannot have both rdf:nodeID and rdf:resource"),
])
def test_rdflib_parse_errors_name_file_and_line(tmp_path, name, text, where) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(DataError) as error:
        parse_rdf(path)
    assert str(error.value) == f"{path}{where}"


def test_rdflib_engine_on_bad_ntriples_names_the_line(tmp_path) -> None:
    path = write(tmp_path / "bad.nt", GOOD + GOOD + '<http://a.org/s> <http://a.org/p> "x .\n')
    with pytest.raises(DataError, match=rf"^{path}:3: unterminated literal"):
        parse_rdf(path, engine="rdflib")


def test_missing_rdflib_is_a_one_line_error_naming_the_extra(files, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "rdflib", None)
    for syntax in ("turtle", "rdfxml"):
        with pytest.raises(ConfigError, match=r"needs rdflib, which is not installed: pip install 'kgem\[rdf\]'$"):
            parse_rdf(files[syntax])
    assert triple_set(parse_rdf(files["ntriples"], literals="entities", prefixes=PREFIXES).triples) == GRAPH


def test_bad_options(files) -> None:
    with pytest.raises(DataError, match="unknown RDF format 'n3'"):
        parse_rdf(files["ntriples"], format="n3")
    with pytest.raises(DataError, match="literals must be one of drop, entities, attributes"):
        parse_rdf(files["ntriples"], literals="keep")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="kgem's own reader reads N-Triples and N-Quads"):
        parse_rdf(files["turtle"], engine="kgem")
    with pytest.raises(DataError, match="cannot tell the RDF syntax"):
        parse_rdf(write(files["ntriples"].with_name("graph.txt"), NTRIPLES))
    assert len(parse_rdf(files["ntriples"].with_name("graph.txt"), format="ntriples").triples) == 4


# ---------------------------------------------------------------------------------------------------- literals


def test_literal_options(files, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="kgem"):
        dropped = parse_rdf(files["ntriples"], prefixes=PREFIXES)
    assert triple_set(dropped.triples) == {t for t in GRAPH if not t[2].startswith('"')}
    assert f"dropped {LITERAL_OBJECTS} of {len(GRAPH)} triples whose object is a literal" in caplog.text
    assert dropped.attributes.empty
    kept = parse_rdf(files["ntriples"], literals="entities", prefixes=PREFIXES)
    assert len(kept.triples) == len(GRAPH) and kept.attributes.empty
    typed = parse_rdf(files["ntriples"], literals="attributes", prefixes=PREFIXES)
    assert triple_set(typed.triples) == triple_set(dropped.triples)
    assert typed.attributes.to_numpy().tolist() == [["ex:bob", "foaf:age", 42.0], ["ex:bob", "ex:height", 1.85]]
    plain = parse_rdf(files["ntriples"], literals="attributes", plain_numbers=True, prefixes=PREFIXES)
    assert plain.attributes.to_numpy().tolist() == [["ex:bob", "foaf:age", 42.0], ["ex:bob", "ex:height", 1.85],
                                                    ["_:b0", "foaf:age", 7.0]]


def test_numeric_attributes_keep_the_first_value_and_only_finite_well_typed_ones(tmp_path) -> None:
    xsd = "http://www.w3.org/2001/XMLSchema#"
    path = write(tmp_path / "n.nt", "".join(
        f'<http://a.org/{s}> <http://a.org/{p}> "{v}"^^<{xsd}{t}> .\n' for s, p, v, t in [
            ("x", "n", "5", "integer"), ("x", "n", "6", "integer"), ("x", "m", "INF", "double"),
            ("x", "k", "abc", "integer"), ("y", "n", "-1.5E2", "double"), ("y", "m", " 3 ", "int"),
            ("y", "k", "2020", "gYear"), ("y", "j", "7", "nonNegativeInteger")]) + GOOD)
    frame = parse_rdf(path, literals="attributes").attributes
    assert frame.to_numpy().tolist() == [["http://a.org/x", "http://a.org/n", 5.0],
                                         ["http://a.org/y", "http://a.org/n", -150.0],
                                         ["http://a.org/y", "http://a.org/m", 3.0],
                                         ["http://a.org/y", "http://a.org/j", 7.0]]


def test_attributes_are_the_literal_models_matrix(tmp_path) -> None:
    """Numeric literals through literals_from_df: one row per entity, min-max normalised per attribute, computed
    here by hand (an entity without a value counts as 0, as LiteralE does)."""
    path = write(tmp_path / "g.nt", "".join([
        "<http://a.org/x> <http://a.org/r> <http://a.org/y> .\n",
        "<http://a.org/y> <http://a.org/r> <http://a.org/z> .\n",
        '<http://a.org/x> <http://a.org/size> "10"^^<http://www.w3.org/2001/XMLSchema#integer> .\n',
        '<http://a.org/y> <http://a.org/size> "30"^^<http://www.w3.org/2001/XMLSchema#integer> .\n',
        '<http://a.org/z> <http://a.org/age> "4.0"^^<http://www.w3.org/2001/XMLSchema#double> .\n']))
    read = read_rdf(path, literals="attributes")
    matrix = read.literals().values.numpy()
    assert list(read.triples.entities.labels) == ["http://a.org/x", "http://a.org/y", "http://a.org/z"]
    np.testing.assert_allclose(matrix, [[0, 1 / 3], [0, 1], [1, 0]])  # columns: age, size (sorted)
    np.testing.assert_allclose(read_rdf_literals(path, read.triples.entities).values.numpy(), matrix)


# ---------------------------------------------------------------------------------------------------- prefixes


def test_labels_that_look_like_prefixed_names_round_trip() -> None:
    prefixes = Prefixes({**WELL_KNOWN, "": "http://base.org/", "ex": EX})
    iris = ["http://www.w3.org/1999/02/22-rdf-syntax-ns#type", "rdf:type", "ex:thing", "foo:bar", "urn:isbn:1",
            "_:x", '"q"', "<a>", "", "http://base.org/a", ":a", "http://example.org/", "http://example.org/a/b#c"]
    labels = prefixes.shorten(iris)
    assert labels.tolist() == ["rdf:type", "<rdf:type>", "<ex:thing>", "foo:bar", "urn:isbn:1", "<_:x>", '<"q">',
                               "<<a>>", "<>", ":a", "<:a>", "ex:", "ex:a/b#c"]
    assert [prefixes.iri(label) for label in labels] == iris


def test_the_longest_namespace_and_the_first_prefix_shorten() -> None:
    prefixes = Prefixes({"p": "http://www.wikidata.org/prop/", "wdt": "http://www.wikidata.org/prop/direct/",
                         "first": "http://a.org/", "second": "http://a.org/"})
    assert prefixes.shorten(["http://www.wikidata.org/prop/direct/P31", "http://www.wikidata.org/prop/P31",
                             "http://a.org/x"]).tolist() == ["wdt:P31", "p:P31", "first:x"]
    assert prefixes.iri("second:x") == "http://a.org/x"


IRI_TEXT = st.text(alphabet=st.sampled_from('ab:/#_<>"x.é'), max_size=12)
NAMESPACE = st.text(alphabet=st.sampled_from("ab:/#_x.é"), min_size=1, max_size=6)
PREFIX_NAME = st.sampled_from(["", "a", "ab", "x", "rdf", "b.c", "é"])


@settings(max_examples=300, deadline=None)
@given(st.lists(IRI_TEXT, max_size=20), st.dictionaries(PREFIX_NAME, NAMESPACE, max_size=5))
def test_shortening_is_reversible_and_unambiguous_for_any_map(iris, namespaces) -> None:
    """For any strings and any valid map: the label gives back the IRI, distinct IRIs get distinct labels, and no
    IRI's label starts as a blank node's or a literal's does."""
    prefixes = Prefixes(namespaces)
    labels = prefixes.shorten(iris)
    assert [prefixes.iri(label) for label in labels] == iris
    assert len(set(labels.tolist())) == len(set(iris))
    assert not any(label.startswith(("_:", '"')) for label in labels.tolist())


def test_prefix_maps_save_load_and_reject_bad_prefixes(tmp_path) -> None:
    prefixes = Prefixes({"": "http://base.org/", "ex": EX, **WELL_KNOWN})
    path = prefixes.save(tmp_path / "prefixes.tsv")
    assert path.read_text().splitlines()[:2] == ["\thttp://base.org/", f"ex\t{EX}"]
    assert dict(Prefixes.load(path)) == dict(prefixes) and list(Prefixes.load(path)) == list(prefixes)
    for bad in ("_", "a:b", "1x", "a b"):
        with pytest.raises(DataError, match="a prefix is a name that starts with a letter"):
            Prefixes({bad: EX})
    with pytest.raises(DataError, match="the namespace holds ' '"):
        Prefixes({"ex": "http://a b/"})
    (tmp_path / "bad.tsv").write_text(f"ex\t{EX}\nfoaf http://xmlns.com/foaf/0.1/\n")
    with pytest.raises(DataError, match=rf"^{tmp_path / 'bad.tsv'}:2: expected prefix<TAB>namespace"):
        Prefixes.load(tmp_path / "bad.tsv")
    read = read_rdf(write(tmp_path / "g.nt", NTRIPLES), prefixes=path)  # a prefixes.tsv given by path
    assert "ex:alice" in set(read.triples.entities.labels)


# ---------------------------------------------------------------------------------------------------- writing

CANONICAL = r"""<http://example.org/alice> <http://xmlns.com/foaf/0.1/knows> <http://example.org/bob> .
<http://example.org/alice> <http://xmlns.com/foaf/0.1/name> "Alice \"A\"\tSmith\\"@en-gb .
<http://example.org/alice> <http://example.org/note> "line\nbreak\r\u0001\u2028é😀" .
_:b0 <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <http://xmlns.com/foaf/0.1/Person> .
<http://example.org/bob> <http://xmlns.com/foaf/0.1/age> "42"^^<http://www.w3.org/2001/XMLSchema#integer> .
<http://example.org/caf\u00E9> <http://example.org/p> "x"^^<http://example.org/Code> .
<rdf:odd> <http://example.org/p> _:b0 .
<urn:isbn:123> <http://example.org/p> <http://other.org/z> .
"""


def test_read_then_write_gives_the_identical_lines(tmp_path) -> None:
    source = write(tmp_path / "in.nt", CANONICAL.replace("caf\\u00E9", "café"))
    for prefixes in (None, PREFIXES, {}):
        read = read_rdf(source, literals="entities", prefixes=prefixes)
        out = write_ntriples(read.triples, tmp_path / "out.nt", read.prefixes)
        assert out.read_bytes() == source.read_bytes()
    gz = write_ntriples(read.triples, tmp_path / "out.nt.gz", read.prefixes)
    assert gzip.decompress(gz.read_bytes()) == source.read_bytes()


def test_written_labels_are_canonical_ntriples(tmp_path) -> None:
    """A file with escapes where none are needed, extra blanks and upper-case language tags is written back in
    canonical form, which reads again to the same labels."""
    read = read_rdf(write(tmp_path / "in.nt", NTRIPLES), literals="entities", prefixes=PREFIXES)
    out = write_ntriples(read.triples, tmp_path / "out.nt", PREFIXES)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert '<http://example.org/bob> <http://example.org/city> <http://example.org/Zürich> .' in lines
    assert '<http://example.org/alice> <http://xmlns.com/foaf/0.1/name> "Alicia"@es .' in lines
    assert '_:b0 <http://xmlns.com/foaf/0.1/name> "Carol" .' in lines
    again = read_rdf(out, literals="entities", prefixes=PREFIXES).triples
    assert triple_set(again.to_df()) == GRAPH


def test_writing_labels_that_are_no_rdf_terms_is_an_error(tmp_path) -> None:
    for frame, problem in [
        (pd.DataFrame({"head": ["a b"], "relation": ["ex:p"], "tail": ["ex:o"]}), "label 'a b' is not an IRI"),
        (pd.DataFrame({"head": ['"x"'], "relation": ["ex:p"], "tail": ["ex:o"]}), "row 0: a literal as subject"),
        (pd.DataFrame({"head": ["ex:s"], "relation": ["_:p"], "tail": ["ex:o"]}), "row 0: relation '_:p' is not"),
        (pd.DataFrame({"head": ["ex:s"], "relation": ["ex:p"], "tail": ['"a\\qb"']}), "is not a literal N-Triples"),
        (pd.DataFrame({"head": ["ex:s"], "tail": ["ex:o"]}), "no column(s) ['relation']"),
    ]:
        with pytest.raises(DataError, match=problem.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            write_ntriples(frame, tmp_path / "out.nt", PREFIXES)


# ------------------------------------------------------------------------------------------ streaming vs rdflib


def random_ntriples(rng: random.Random, lines: int) -> str:
    """N-Triples with what the grammar allows: unicode and \\u/\\U escapes in IRIs, blank node labels with dots
    and dashes, every escape in literals, language tags in any case, datatypes, comments and blank lines."""
    def iri() -> str:
        text = "".join(rng.choice("abcXYZ019/#:.-_~%é中") for _ in range(rng.randint(1, 8)))
        text = "".join(f"\\u{ord(c):04X}" if c in "é中" and rng.random() < 0.5 else c for c in text)
        return f"<http://{rng.choice(['a.org', 'xmlns.com/foaf/0.1', 'b.org/x'])}/{text}>"

    def blank() -> str:  # rdflib's parser takes ASCII labels only
        return f"_:{rng.choice('abn')}{rng.choice(['', '.x', '-1', '_2'])}{rng.randint(0, 3)}"

    def literal() -> str:
        chars = ["a", " ", "é", "😀", "\\t", "\\n", "\\r", '\\"', "\\\\", "\\b", "\\f", "\\u0001", "\\u2028",
                 "\\U0001F600", "\\u00e9", "'", "\\'"]
        text = '"' + "".join(rng.choice(chars) for _ in range(rng.randint(0, 6))) + '"'
        suffix = rng.choice(["", "@en", "@EN-gb", "^^<http://www.w3.org/2001/XMLSchema#integer>",
                             "^^<http://www.w3.org/2001/XMLSchema#string>", "^^" + iri()])
        return text + suffix

    out = []
    for _ in range(lines):
        kind = rng.random()
        if kind < 0.05:
            out.append(rng.choice(["# a comment", "", "   "]))
            continue
        subject = iri() if rng.random() < 0.7 else blank()
        obj = rng.choice([iri, blank, literal, literal])()
        space = rng.choice([" ", "\t", "  "])
        out.append(f"{subject}{space}{iri()} {obj}{rng.choice([' .', '.', ' . # note'])}")
    return "\n".join(out) + "\n"


def test_streaming_reader_matches_rdflib_on_a_random_file(tmp_path) -> None:
    """kgem's reader and rdflib's N-Triples parser (labels kept, literals not normalised) on 2000 random lines, read
    in chunks of a few kB: the same labels in the same order."""
    path = write(tmp_path / "random.nt", random_ntriples(random.Random(0), 2000))
    ours = parse_rdf(path, literals="entities", chunk_bytes=4096).triples
    theirs = parse_rdf(path, literals="entities", engine="rdflib").triples
    assert len(ours) > 1800
    pd.testing.assert_frame_equal(ours, theirs)


def test_written_file_is_the_graph_rdflib_reads(tmp_path) -> None:
    """Our reader then writer against rdflib alone: the written file and the random source are the same graph to
    rdflib (blank nodes by label, literals compared by lexical form, language and datatype)."""
    rdflib = pytest.importorskip("rdflib")
    source = write(tmp_path / "random.nt", random_ntriples(random.Random(1), 500))
    read = read_rdf(source, literals="entities")
    out = write_ntriples(read.triples, tmp_path / "out.nt", read.prefixes)

    def graph(path: Path) -> set[tuple[str, ...]]:
        labels: dict = {}
        normalize, rdflib.NORMALIZE_LITERALS = rdflib.NORMALIZE_LITERALS, False
        try:
            parsed = rdflib.Graph().parse(path, format="nt", bnode_context=labels)
        finally:
            rdflib.NORMALIZE_LITERALS = normalize
        names = {node: f"_:{label}" for label, node in labels.items()}
        xsd_string = "http://www.w3.org/2001/XMLSchema#string"

        def key(term) -> tuple[str, ...]:
            if isinstance(term, rdflib.BNode):
                return ("blank", names[term])
            if isinstance(term, rdflib.Literal):
                datatype = "" if term.datatype is None or str(term.datatype) == xsd_string else str(term.datatype)
                return ("literal", str(term), (term.language or "").lower(), datatype)
            return ("iri", str(term))

        return {tuple(key(t) for t in triple) for triple in parsed}

    assert graph(out) == graph(source)


# ---------------------------------------------------------------------------------------------------- datasets


@pytest.fixture(scope="module")
def nations_rdf(tmp_path_factory) -> Path:
    """The bundled nations dataset as N-Triples files (entities dbr:, relations dbo:), each entity with a numeric
    literal (its degree in train) and a name."""
    folder = tmp_path_factory.mktemp("nations_rdf")
    dataset = kgem.load_dataset("nations")
    degree = pd.concat([dataset.train.to_df()["head"], dataset.train.to_df()["tail"]]).value_counts()
    for split, triples in dataset.splits().items():
        frame = triples.to_df()[["head", "relation", "tail"]]
        frame = pd.DataFrame({"head": "dbr:" + frame["head"], "relation": "dbo:" + frame["relation"],
                              "tail": "dbr:" + frame["tail"]})
        if split == "train":
            facts = pd.DataFrame({"head": "dbr:" + degree.index, "relation": "dbo:degree",
                                  "tail": [f'"{n}"^^xsd:integer' for n in degree.to_numpy()]})
            names = pd.DataFrame({"head": "dbr:" + degree.index, "relation": "foaf:name",
                                  "tail": [f'"{name}"@en' for name in degree.index]})
            frame = pd.concat([frame, facts, names], ignore_index=True)
        write_ntriples(frame, folder / f"{split}.nt")
    return folder


def test_dataset_from_a_folder_of_ntriples(nations_rdf) -> None:
    nations = kgem.load_dataset("nations")
    dataset = Dataset.from_folder(nations_rdf)
    assert (dataset.num_entities, dataset.num_relations) == (nations.num_entities, nations.num_relations)
    assert [len(t) for t in dataset.splits().values()] == [len(t) for t in nations.splits().values()]
    assert dataset.entities.labels[0].startswith("dbr:") and dict(dataset.prefixes) == WELL_KNOWN
    assert dataset.attributes is not None and dataset.attributes.empty  # literals dropped by default
    typed = Dataset.from_folder(nations_rdf, literals="attributes")
    assert len(typed.attributes) == nations.num_entities and set(typed.attributes["attribute"]) == {"dbo:degree"}
    assert Dataset.from_folder(nations_rdf, literals="entities").num_entities == 2 * nations.num_entities + 14


def test_dataset_options_that_do_not_apply_are_errors(nations_rdf, tmp_path) -> None:
    with pytest.raises(DataError, match="RDF has no columns; header apply to delimited files only"):
        Dataset.from_folder(nations_rdf, header=True)
    (tmp_path / "train.tsv").write_text("a\tr\tb\n")
    with pytest.raises(DataError, match="not an RDF file .* RDF options were given: literals"):
        Dataset.from_folder(tmp_path, literals="entities")


def test_one_file_of_facts_split(nations_rdf) -> None:
    dataset = Dataset.from_split(nations_rdf / "train.nt", literals="attributes")
    assert dataset.prefixes is not None and len(dataset.attributes) == 14
    assert sum(len(t) for t in dataset.splits().values()) == len(kgem.load_dataset("nations").train)


def test_config_formats(nations_rdf, tmp_path) -> None:
    assert set(RDF_FORMATS) == set(FORMATS)
    with pytest.raises(ConfigError, match="or an RDF syntax \\(ntriples, nquads, turtle, rdfxml\\), got 'n3'"):
        DataConfig(format="n3")
    renamed = tmp_path / "data"
    renamed.mkdir()
    for split in ("train", "valid", "test"):  # .txt names: read as N-Triples only because data.format says so
        (renamed / f"{split}.txt").write_bytes((nations_rdf / f"{split}.nt").read_bytes())
    dataset = dataset_from_config(DataConfig(dataset=str(renamed), format="ntriples", rdf_literals="attributes"))
    assert dataset.num_entities == 14 and len(dataset.attributes) == 14
    matrix = literals_from_config(DataConfig(dataset=str(renamed), rdf_literals="attributes"), dataset)
    assert matrix is not None and matrix.shape == (14, 1) and float(matrix.max()) == 1.0
    from_file = literals_from_config(DataConfig(literals=str(nations_rdf / "train.nt")), dataset)
    assert from_file is not None and bool((from_file == matrix).all())
    with pytest.raises(ConfigError, match="has no numeric literals"):
        literals_from_config(DataConfig(rdf_literals="attributes"), kgem.load_dataset("nations"))


def test_train_from_rdf_and_write_predictions_back(nations_rdf, tmp_path) -> None:
    """kgem train on a folder of .nt files; the saved model keeps the prefix map, by which its predictions are
    written back as N-Triples with full IRIs. A literal model takes the numeric literals as attributes."""
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(nations_rdf), "--dim", "8", "--epochs", "1", "-q",
                 "--output", str(out)]) == 0
    loaded = load_model(out / "model")
    assert dict(model_prefixes(loaded.extra)) == WELL_KNOWN
    predictions = loaded.predict_tails(pd.DataFrame({"head": ["dbr:usa"], "relation": ["dbo:embassy"]}), k=3)
    written = write_ntriples(predictions, tmp_path / "predictions.nt", model_prefixes(loaded.extra))
    lines = written.read_text().splitlines()
    assert len(lines) == 3 and all(line.startswith("<http://dbpedia.org/resource/usa> "
                                                   "<http://dbpedia.org/ontology/embassy> <http://dbpedia.org/resource/")
                                   for line in lines)
    assert main(["predict", str(out / "model"), "--head", "dbr:usa", "--relation", "dbo:embassy", "-k", "3",
                 "--output", str(tmp_path / "cli.nt")]) == 0
    assert (tmp_path / "cli.nt").read_text() == written.read_text()
    literal = tmp_path / "literal"
    assert main(["train", "--dataset", str(nations_rdf), "--model", "distmult_literal", "--rdf-literals",
                 "attributes", "--dim", "8", "--epochs", "1", "-q", "--output", str(literal)]) == 0
    assert load_model(literal / "model").model.num_entities == 14
