"""Term-expression selection (cbma.terms) on a small hand-made vocabulary."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cbma.errors import CbmaError
from cbma.terms import (
    SEMANTICS,
    And,
    AndNot,
    Not,
    Or,
    Term,
    ambiguity_warning,
    parse,
    render,
    select,
)

STUDIES = [f"s{i:02d}" for i in range(1, 11)]
TERMS = ["emotion", "emotional", "reward", "pain", "working memory", "memory", "face", "faces",
         "visual"]

# Weights chosen so that, at the default threshold 0.001, the bare terms select:
#   emotion   s01 s02 s07 (s07 is exactly 0.001)   emotional  s02 (s03 has 0.0005)
#   reward    s02 s03 s09                          pain       s03 s04 s08
#   working memory  s05 s09                        memory     s05 s06
#   face      s01 s08                              faces      s07 s08
#   visual    s04 s06 s07                          s10 has no term at all
WEIGHTS = {
    "s01": {"emotion": 0.2, "face": 0.1},
    "s02": {"emotion": 0.05, "emotional": 0.3, "reward": 0.4},
    "s03": {"emotional": 0.0005, "reward": 0.1, "pain": 0.02},
    "s04": {"pain": 0.5, "visual": 0.2},
    "s05": {"working memory": 0.3, "memory": 0.1},
    "s06": {"memory": 0.2, "visual": 0.05},
    "s07": {"emotion": 0.001, "faces": 0.25, "visual": 0.3},
    "s08": {"face": 0.05, "faces": 0.02, "pain": 0.1},
    "s09": {"reward": 0.002, "working memory": 0.01},
    "s10": {},
}


@pytest.fixture(scope="module")
def weights():
    frame = pd.DataFrame(0.0, index=STUDIES, columns=TERMS)
    for study, row in WEIGHTS.items():
        for term, value in row.items():
            frame.loc[study, term] = value
    return frame


def ids(*numbers):
    return [f"s{n:02d}" for n in numbers]


ALL = ids(*range(1, 11))

# (expression, frequency_threshold, expected selection), the same in both semantics: on
# this table no wildcard selects a study through a sum of sub-threshold weights
CASES = [
    # single terms, case, spaces, quotes
    ("emotion", 0.001, ids(1, 2, 7)),
    ("emotional", 0.001, ids(2)),
    ("EMOTION", 0.001, ids(1, 2, 7)),
    ("Working Memory", 0.001, ids(5, 9)),
    ("working   memory", 0.001, ids(5, 9)),
    ("  memory\t", 0.001, ids(5, 6)),
    ('"working memory"', 0.001, ids(5, 9)),
    ('"Emotion"', 0.001, ids(1, 2, 7)),
    ('"face" | "faces"', 0.001, ids(1, 7, 8)),
    ("memory & working memory", 0.001, ids(5)),
    # wildcards
    ("emo*", 0.001, ids(1, 2, 7)),
    ("face*", 0.001, ids(1, 7, 8)),
    ("*memory", 0.001, ids(5, 6, 9)),
    ("em*al", 0.001, ids(2)),
    ("*", 0.001, ids(*range(1, 10))),
    ("Emo* & ~Reward", 0.001, ids(1, 7)),
    ("face* & visual", 0.001, ids(7)),
    # operators
    ("emotion & reward", 0.001, ids(2)),
    ("emotion | pain", 0.001, ids(1, 2, 3, 4, 7, 8)),
    ("reward &~ emotion", 0.001, ids(3, 9)),
    ("~emotion", 0.001, ids(3, 4, 5, 6, 8, 9, 10)),
    ("~~emotion", 0.001, ids(1, 2, 7)),
    ("~ ~ ~pain", 0.001, ids(1, 2, 5, 6, 7, 9, 10)),
    ("pain & ~face", 0.001, ids(3, 4)),
    ("pain&~face", 0.001, ids(3, 4)),
    ("~emotion & ~pain", 0.001, ids(5, 6, 9, 10)),
    ("~(emotion | reward | pain)", 0.001, ids(5, 6, 10)),
    # parentheses and precedence
    ("(emotion | reward) & pain", 0.001, ids(3)),
    ("emotion | reward & pain", 0.001, ids(1, 2, 3, 7)),
    ("emotion | (reward & pain)", 0.001, ids(1, 2, 3, 7)),
    ("pain &~ face | visual", 0.001, ids(3, 4, 6, 7)),
    ("(pain &~ face) | visual", 0.001, ids(3, 4, 6, 7)),
    ("pain &~ (face | visual)", 0.001, ids(3)),
    ("visual | pain & face", 0.001, ids(4, 6, 7, 8)),
    ("visual & pain | face", 0.001, ids(1, 4, 8)),
    ("emotion & reward | pain & face", 0.001, ids(2, 8)),
    ("emotion | reward &~ pain | memory", 0.001, ids(1, 2, 5, 6, 7, 9)),
    ("(((pain)))", 0.001, ids(3, 4, 8)),
    ("((emotion & (reward | face)) | (memory &~ (working memory)))", 0.001, ids(1, 2, 6)),
    # frequency threshold
    ("emotion", 0.01, ids(1, 2)),
    ("emotion", 0.0001, ids(1, 2, 7)),
    ("emotional", 0.0001, ids(2, 3)),
    ("reward", 0.05, ids(2, 3)),
    ("reward | working memory", 0.1, ids(2, 3, 5)),
    ("~reward", 0.2, [s for s in ALL if s != "s02"]),
    ("emo*", 0.1, ids(1, 2)),
]


@pytest.mark.filterwarnings("ignore:term expression:UserWarning")
@pytest.mark.parametrize("semantics", SEMANTICS)
@pytest.mark.parametrize(("expression", "threshold", "expected"), CASES)
def test_select(weights, expression, threshold, expected, semantics):
    result = select(expression, weights, frequency_threshold=threshold, semantics=semantics)
    assert isinstance(result, np.ndarray)
    assert list(result) == expected


def test_enough_cases():
    assert len(CASES) + len(COMPARISONS) >= 40


# (expression, frequency_threshold, Neurosynth's selection, cbma's selection); None: no study.
# Neurosynth keeps the studies at the threshold, then those whose weight passes the
# comparison, with '>' meaning '>='; cbma compares every study's weight as written.
# pain: s03 0.02, s04 0.5, s08 0.1; emotional: s02 0.3, s03 0.0005 (under 0.001).
COMPARISONS = [
    ("pain > 0.1", 0.001, ids(4, 8), ids(4)),
    ("pain >= 0.1", 0.001, ids(4, 8), ids(4, 8)),
    ("pain < 0.05", 0.001, ids(3), ids(1, 2, 3, 5, 6, 7, 9, 10)),
    ("pain <= 0.1", 0.001, ids(3, 8), ids(1, 2, 3, 5, 6, 7, 8, 9, 10)),
    ("pain = 0", 0.001, None, ids(1, 2, 5, 6, 7, 9, 10)),
    ("pain == 0.5", 0.001, ids(4), ids(4)),
    ("pain != 0", 0.001, ids(3, 4, 8), ids(3, 4, 8)),
    ("emotional > 0", 0.001, ids(2), ids(2, 3)),
    # sums (emotion + emotional): s01 0.2, s02 0.35; any: s01 (0.2), s02 (0.3)
    ("emo* > 0.1", 0.001, ids(1, 2), ids(1, 2)),
    ("emotion>=0.05&reward", 0.001, ids(2), ids(2)),
    ("visual >= 0.05 &~ (visual > 0.25)", 0.001, ids(4, 6), ids(4, 6)),
    ("~(pain > 0.01)", 0.001, ids(1, 2, 5, 6, 7, 9, 10), ids(1, 2, 5, 6, 7, 9, 10)),
    # Neurosynth: pain >= 0.05 (s04, s08), then >= 0.01; cbma ignores the threshold
    ("pain > 1e-2", 0.05, ids(4, 8), ids(3, 4, 8)),
]


@pytest.mark.parametrize(("expression", "threshold", "neurosynth", "cbma"), COMPARISONS)
def test_comparisons(weights, expression, threshold, neurosynth, cbma):
    assert list(select(expression, weights, threshold, semantics="cbma")) == cbma
    if neurosynth is None:
        with pytest.raises(CbmaError, match="selects no studies"):
            select(expression, weights, threshold)
    else:
        assert list(select(expression, weights, threshold)) == neurosynth
        assert list(select(expression, weights, threshold, semantics="neurosynth")) == neurosynth


def _table(rows):
    """A study x term weight table from {study: {term: weight}} (absent: 0)."""
    terms = sorted({t for row in rows.values() for t in row})
    return pd.DataFrame([[row.get(t, 0.0) for t in terms] for row in rows.values()],
                        index=list(rows), columns=terms)


def test_wildcard_sums_the_matching_terms():
    # Neurosynth (FeatureTable.get_ids, func=np.sum): a wildcard's weight is the sum of the
    # weights of every term it matches, compared with the threshold (sum >= 0.05 here):
    #   s1  emotion 0.03 + emotional 0.03  = 0.06  -> selected (neither term alone is)
    #   s2  emotion 0.08                   = 0.08  -> selected
    #   s3  emotional 0.02                 = 0.02  -> not
    #   s4  pain 0.3                       = 0     -> not
    #   s5  emotion 0.04 + emotional 0.005 = 0.045 -> not
    # cbma's "any": only s2 has a single emo* term at 0.05 or more.
    table = _table({
        "s1": {"emotion": 0.03, "emotional": 0.03},
        "s2": {"emotion": 0.08},
        "s3": {"emotional": 0.02},
        "s4": {"pain": 0.3},
        "s5": {"emotion": 0.04, "emotional": 0.005, "pain": 0.1},
    })
    assert list(select("emo*", table, 0.05)) == ["s1", "s2"]
    assert list(select("emo*", table, 0.05, semantics="cbma")) == ["s2"]
    # pain (>= 0.05): s4, s5; the union follows the wildcard's selection
    assert list(select("emo* | pain", table, 0.05)) == ["s1", "s2", "s4", "s5"]
    assert list(select("emo* | pain", table, 0.05, semantics="cbma")) == ["s2", "s4", "s5"]
    # a comparison on a wildcard compares the sum too: s1 0.06, s2 0.08, s5 0.045 (< 0.05)
    assert list(select("emo* > 0.06", table, 0.001)) == ["s1", "s2"]
    assert list(select("emo* > 0.06", table, 0.001, semantics="cbma")) == ["s2"]


def test_greater_than_means_at_least():
    # Neurosynth (lexparser.Parser.p_list_rt): 'list > x' keeps the studies with weight >= x,
    # among those at the threshold (0.001):
    #   pain: s1 0.1, s2 0.2, s3 0.05, s4 0
    #   pain > 0.1  ->  0.1 >= 0.1 (s1) and 0.2 (s2)   cbma (strict): s2 only
    #   pain > 0.2  ->  s2                             cbma: no study
    table = _table({"s1": {"pain": 0.1}, "s2": {"pain": 0.2}, "s3": {"pain": 0.05},
                    "s4": {"emotion": 0.4}})
    assert list(select("pain > 0.1", table)) == ["s1", "s2"]
    assert list(select("pain > 0.1", table, semantics="cbma")) == ["s2"]
    assert list(select("pain > 0.2", table)) == ["s2"]
    with pytest.raises(CbmaError, match="selects no studies"):
        select("pain > 0.2", table, semantics="cbma")
    # '>=' is '>' in Neurosynth's meaning
    assert list(select("pain >= 0.1", table)) == ["s1", "s2"]


def test_less_than_keeps_only_studies_with_the_term():
    # Neurosynth (lexparser.Parser.p_list_lt on the weights from get_ids): 'list < x' keeps,
    # of the studies whose weight is at least the threshold (0.001), those under x:
    #   pain: s1 0.02, s2 0.2, s3 absent, s4 0.0005 (under the threshold); emotion: s3, s4
    #   pain < 0.05  ->  at the threshold: s1, s2  ->  under 0.05: s1
    #   cbma (every study's weight): s1 0.02, s3 0, s4 0.0005  ->  s1, s3, s4
    table = _table({"s1": {"pain": 0.02}, "s2": {"pain": 0.2},
                    "s3": {"emotion": 0.3}, "s4": {"pain": 0.0005, "emotion": 0.1}})
    assert list(select("pain < 0.05", table)) == ["s1"]
    assert list(select("pain < 0.05", table, semantics="cbma")) == ["s1", "s3", "s4"]
    # so 'emotion & pain < 0.05' needs pain: none in Neurosynth's meaning, s3 and s4 in cbma's
    with pytest.raises(CbmaError, match="selects no studies"):
        select("emotion & pain < 0.05", table)
    assert list(select("emotion & pain < 0.05", table, semantics="cbma")) == ["s3", "s4"]
    # and the complement holds the studies without pain
    assert list(select("~(pain < 0.05)", table)) == ["s2", "s3", "s4"]
    assert list(select("~(pain < 0.05)", table, semantics="cbma")) == ["s2"]


@pytest.mark.parametrize("semantics", ["Neurosynth", "any", "", None, 1])
def test_unknown_semantics(weights, semantics):
    with pytest.raises(CbmaError, match="semantics must be one of 'neurosynth', 'cbma'"):
        select("pain", weights, semantics=semantics)


@pytest.mark.parametrize(("implicit", "explicit"), [
    ("a | b & c", "a | (b & c)"),
    ("a &~ b | c", "(a &~ b) | c"),
    ("a & b &~ c & d", "((a & b) &~ c) & d"),
    ("a | b | c", "(a | b) | c"),
    ("~a & b", "(~a) & b"),
    ("a | ~b & c", "a | ((~b) & c)"),
])
def test_precedence(implicit, explicit):
    assert parse(implicit) == parse(explicit)


def test_tree_shape():
    assert parse("Emo* &~ pain | ~ (face)") == Or(
        AndNot(Term("emo*"), Term("pain")), Not(Term("face")))
    assert parse("a & b") == And(Term("a"), Term("b"))


@pytest.mark.parametrize("expression", [
    "a | b & c", "(a | b) & ~c", "x > 0.123456789 &~ \"y z\"", "~(a & b) | c &~ d",
    "((a | b) & (c | d)) | e", "a* <= 1e-05",
])
def test_render_round_trip(expression):
    tree = parse(expression)
    assert parse(render(tree)) == tree
    assert parse(render(tree, explicit=True)) == tree


# (expression, frequency_threshold, fragments the message must contain)
ERRORS = [
    ("emotoin", 0.001, ["unknown term 'emotoin'", "did you mean", "'emotion'"]),
    ("rewrd & pain", 0.001, ["unknown term 'rewrd' at position 0", "'reward'"]),
    ("pain | xyzzy", 0.001, ["unknown term 'xyzzy' at position 7", "no similar terms"]),
    ("emotion pain", 0.001, ["unknown term 'emotion pain'", "join them with '&' or '|'"]),
    ("emt*", 0.001, ["wildcard 'emt*'", "matches no term", "'emotion'"]),
    ("qq*", 0.001, ["wildcard 'qq*'", "matches no term", "no similar terms"]),
    ("emotion & pain", 0.001,
     ["term expression 'emotion & pain' selects no studies at frequency_threshold=0.001"]),
    ("emotion", 0.5, ["selects no studies at frequency_threshold=0.5"]),
    ("", 0.001, ["is empty"]),
    ("   ", 0.001, ["is empty"]),
    ("emo* &", 0.001, ["term expression 'emo* &': expected a term after '&' at position 6"]),
    ("pain &~", 0.001, ["expected a term after '&~' at position 7"]),
    ("| pain", 0.001, ["expected a term at position 0, found '|'"]),
    ("pain & & face", 0.001, ["expected a term after '&' at position 7, found '&'"]),
    ("pain & ()", 0.001, ["expected a term after '(' at position 8, found ')'"]),
    ("emotion (pain)", 0.001, ["expected an operator", "at position 8, found '('"]),
    ("(emotion | pain", 0.001, ["unbalanced parentheses", "'(' at position 0 is never closed"]),
    ("emotion | pain)", 0.001,
     ["unbalanced parentheses", "')' at position 14 has no matching '('"]),
    ("pain > abc", 0.001, ["bad comparison number 'abc' at position 7"]),
    ("pain > inf", 0.001, ["bad comparison number 'inf'"]),
    ("pain >", 0.001, ["expected a number after '>' at position 6"]),
    ('"working memory', 0.001, ["unterminated double quote at position 0"]),
    ('"" & pain', 0.001, ["empty quoted term at position 0"]),
    ("pain", "abc", ["frequency_threshold must be a finite number"]),
]


@pytest.mark.filterwarnings("ignore:term expression:UserWarning")
@pytest.mark.parametrize(("expression", "threshold", "fragments"), ERRORS)
def test_errors(weights, expression, threshold, fragments):
    with pytest.raises(CbmaError) as info:
        select(expression, weights, frequency_threshold=threshold)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_parse_rejects_non_string():
    with pytest.raises(CbmaError, match="must be a string"):
        parse(None)


def test_ambiguity_warning(weights):
    message = ambiguity_warning("a | b & c")
    assert message is not None
    assert "'a | (b & c)'" in message and "parentheses" in message
    assert ambiguity_warning("(a | b) & c") is None
    assert ambiguity_warning("a | (b & c)") is None
    assert ambiguity_warning("a & b &~ c") is None
    assert ambiguity_warning('"a | b" & c') is None
    assert "(a &~ b) | c" in ambiguity_warning("a &~ b | c")
    assert ambiguity_warning("x & (a | b & c)") is not None
    # Neurosynth groups from the right: 'a &~ b & c' is a &~ (b & c) there
    assert "'(a &~ b) & c'" in ambiguity_warning("a &~ b & c")
    assert "from the right" in ambiguity_warning("a &~ b &~ c")
    assert ambiguity_warning("(a &~ b) & c") is None
    assert ambiguity_warning("a &~ (b & c)") is None
    assert ambiguity_warning("a & ~b & c") is None  # '& ~' is '&' with a not, no grouping
    assert ambiguity_warning('"a &~ b" & c') is None

    with pytest.warns(UserWarning, match=re.escape("reads it as 'emotion | (reward & pain)'")):
        select("emotion | reward & pain", weights)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        select("(emotion | reward) & pain", weights)
    # pain (s03 s04 s08) minus face (s01 s08), then & visual (s04 s06 s07): s04; Neurosynth's
    # reading, pain minus (face & visual, none): s03 s04 s08
    with pytest.warns(UserWarning, match=re.escape("reads it as '(pain &~ face) & visual'")):
        assert list(select("pain &~ face & visual", weights)) == ids(4)
    assert list(select("pain &~ (face & visual)", weights)) == ids(3, 4, 8)


def test_sparse_weights(weights):
    matrix = sp.csr_matrix(weights.to_numpy())
    triple = (matrix, list(weights.index), list(weights.columns))
    # pain > 0.1 is pain >= 0.1 (s04, s08) in Neurosynth's meaning, pain > 0.1 (s04) in cbma's
    assert list(select("(emo* &~ reward) | pain > 0.1", triple)) == ids(1, 4, 7, 8)
    assert list(select("(emo* &~ reward) | pain > 0.1", triple, semantics="cbma")) == ids(1, 4, 7)
    assert list(select("~(emotion | face*)", triple, 0.01)) == ids(3, 4, 5, 6, 9, 10)
    with pytest.raises(CbmaError, match="shape"):
        select("pain", (matrix, STUDIES[:3], TERMS))
    with pytest.raises(CbmaError, match="DataFrame"):
        select("pain", weights.to_numpy())


def test_int_ids_and_duplicate_case_columns():
    frame = pd.DataFrame({"Pain": [0.2, 0.0, 0.0], "pain": [0.0, 0.3, 0.0],
                          "Touch": [0.0, 0.0, 0.5]}, index=[30, 10, 20])
    assert list(select("PAIN", frame)) == [10, 30]
    assert list(select("~pain", frame)) == [20]


TOKENS = ["emotion", "emo*", "*", "working memory", '"working memory"', "pain", "face*", "Reward",
          "xyz", "em*al", "&", "&~", "|", "~", "(", ")", "(", ")", ">", ">=", "<", "<=", "=",
          "==", "!=", "0", "0.1", "-1", "1e-3", "abc", "nan", '"', '""', "@", "#", "!", "\\",
          ".", ",", "\t", "\n", "é", "\x00", "  "]


def test_fuzz_only_cbma_errors(weights):
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    expressions = st.one_of(
        st.lists(st.sampled_from(TOKENS), max_size=14).flatmap(
            lambda toks: st.sampled_from([" ", ""]).map(lambda sep: sep.join(toks))),
        st.text(max_size=25),
    )

    @hypothesis.settings(max_examples=300, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(expression=expressions,
                      threshold=st.sampled_from([0.001, 0.0, 0.05, 0.5]))
    def check(expression, threshold):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            try:
                tree = parse(expression)
            except CbmaError:
                tree = None
            if tree is not None:
                assert parse(render(tree)) == tree
            try:
                result = select(expression, weights, frequency_threshold=threshold)
            except CbmaError as err:
                assert "\n" not in str(err).replace(repr(expression), "")
                return
            assert tree is not None
            assert list(result) == sorted(set(result)) and set(result) <= set(STUDIES)

    check()


def test_fuzz_valid_expressions(weights):
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    leaves = st.one_of(
        st.sampled_from(TERMS + ["emo*", "face*", "*memory", "Pain", '"working memory"']),
        st.builds(lambda t, op, v: f"{t} {op} {v}", st.sampled_from(["pain", "emo*", "visual"]),
                  st.sampled_from([">", ">=", "<", "<=", "=", "!="]),
                  st.sampled_from(["0", "0.05", "0.1", "0.3"])),
    )
    expressions = st.recursive(leaves, lambda inner: st.one_of(
        st.builds(lambda x: f"~{x}", inner),
        st.builds(lambda x: f"({x})", inner),
        st.builds(lambda a, op, b: f"{a} {op} {b}", inner, st.sampled_from(["&", "&~", "|"]),
                  inner),
    ), max_leaves=6)

    @hypothesis.settings(max_examples=200, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(expression=expressions, semantics=st.sampled_from(SEMANTICS))
    def check(expression, semantics):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            explicit = render(parse(expression), explicit=True)
            try:
                result = select(expression, weights, semantics=semantics)
            except CbmaError as err:
                assert "selects no studies" in str(err)
                return
            # the explicitly parenthesised reading selects the same studies
            assert list(select(explicit, weights, semantics=semantics)) == list(result)
            assert ambiguity_warning(explicit) is None

    check()
