"""Select studies with a Neurosynth-style term expression.

A term expression names terms of a vocabulary (the columns of a study-by-term
weight table, such as Neurosynth's tf-idf features) and combines them with
set operators, for example ``"(emotion* | reward) &~ pain"``.

By default an expression means what it means in Neurosynth
(``Dataset.get_studies(expression=...)``, which parses it with
``neurosynth/base/lexparser.py`` and looks terms up with
``FeatureTable.get_ids``); ``semantics="cbma"`` gives the per-term meaning of
earlier cbma versions. The two differ only for wildcards and comparisons.

Syntax
------
Term
    One or more words separated by spaces (``working memory``); a word is made
    of letters, digits, ``_``, ``-``, ``'`` and ``*``. Any other characters
    can be used inside double quotes (``"working memory"``). Matching ignores
    case and collapses runs of white space. A bare term selects the studies
    whose weight for it is at least ``frequency_threshold`` (both semantics,
    as Neurosynth's ``weights >= threshold``).
Wildcard
    ``*`` anywhere in a term (also inside quotes) matches any run of
    characters, and the term stands for every vocabulary term it matches.

    - ``neurosynth``: the study's weight for the wildcard is the **sum** of
      its weights for the matching terms (Neurosynth's default
      ``func=np.sum``), and the study is selected when that sum is at least
      ``frequency_threshold``. ``emo*`` can thus select a study in which no
      single ``emo...`` term reaches the threshold.
    - ``cbma``: the union of the matching terms, each compared with the
      threshold on its own (a study is selected when any of them passes).
Comparison
    ``term OP number`` with ``OP`` one of ``>``, ``>=``, ``<``, ``<=``, ``=``
    (or ``==``) and ``!=``. Missing weights count as 0.

    - ``neurosynth``: the comparison narrows the studies that the bare term
      selects (weight, for a wildcard the summed weight, at least
      ``frequency_threshold``) to those whose weight satisfies it; ``>``
      means *at least* (Neurosynth's ``list > x`` keeps ``weight >= x``), so
      ``>`` and ``>=`` are the same. ``pain < 0.05`` is therefore
      ``frequency_threshold <= pain < 0.05`` and never selects a study
      without the term. Neurosynth itself has only ``<`` and ``>``; the
      other operators are cbma's, with their usual meaning on the same
      studies.
    - ``cbma``: the comparison tests the weight itself in every study, with
      the strict or non-strict operator as written, and ignores the
      threshold (``pain < 0.05`` also selects the studies without ``pain``);
      for a wildcard, a study is selected when any matching term satisfies
      it.
Operators
    ``~x`` (not: every study of the table not selected by ``x``; a cbma
    addition, Neurosynth has no unary not), ``x & y`` (and), ``x &~ y``
    (and-not, the same as ``x & ~y``), ``x | y`` (or), and parentheses for
    grouping. They combine the selected studies as sets, in both semantics.

Precedence
----------
From tightest to loosest:

1. ``~`` (prefix, may be repeated),
2. ``&`` and ``&~`` (one level, left-associative),
3. ``|`` (left-associative).

So ``a | b & c`` is ``a | (b & c)`` and ``a &~ b | c`` is ``(a &~ b) | c``.
Neurosynth's parser gives every operator the same precedence and groups from
the right (``a & b | c`` is ``a & (b | c)`` and ``a &~ b & c`` is
``a &~ (b & c)`` there). The readings differ when ``|`` is mixed with ``&``
or ``&~``, and when ``&~`` is followed by another ``&`` or ``&~``, without
parentheses: :func:`select` warns about those (:func:`ambiguity_warning`);
parentheses make the meaning the same in both.

Other differences from Neurosynth
---------------------------------
cbma also accepts digits, apostrophes and quoted terms, ignores case (terms
differing only by case count as one), and stops with an error on an unknown
term, a wildcard matching nothing, a syntax error or an empty selection.
Neurosynth instead skips the characters it does not know (so ``a & ~b`` is
``a & b`` and ``a >= 0.1`` is ``a > 0.1`` there) and gives an unknown term the
weight 0 in every study. Neurosynth can also compare the summed weights of a
parenthesised group (``(a | b) > 0.1``); cbma compares terms only.

Positions in error messages count characters from 0.
"""

import difflib
import math
import re
import warnings
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pandas as pd
import pyparsing as pp

from .errors import CbmaError

__all__ = ["SEMANTICS", "And", "AndNot", "Compare", "Not", "Or", "Term", "ambiguity_warning",
           "parse", "render", "select"]

#: Deepest nesting of parentheses accepted.
MAX_DEPTH = 40

#: The meanings :func:`select` can give an expression; the first is the default.
SEMANTICS = ("neurosynth", "cbma")

_WORD = r"[\w*'\-]+"
_BARE_TERM = re.compile(rf"{_WORD}(?:\s+{_WORD})*")
_COMPARISONS = {
    "<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
    "=": np.equal, "!=": np.not_equal,
}
# Neurosynth's lexparser keeps ``weight >= x`` for ``list > x``
_NEUROSYNTH_COMPARISONS = {**_COMPARISONS, ">": np.greater_equal}
_CMP_AT_END = re.compile(r"(<=|>=|==|!=|<|>|=)$")


# --------------------------------------------------------------------------- tree


@dataclass(frozen=True)
class Term:
    """A vocabulary term or wildcard pattern, selected at the frequency threshold.

    Parameters
    ----------
    name : str
        The term, lower-case with single spaces; ``*`` is a wildcard.
    pos : int
        Where the term starts in the expression (not part of equality).
    """

    name: str
    pos: int = field(default=0, compare=False)

    @property
    def is_wildcard(self):
        """bool: whether the name contains ``*``."""
        return "*" in self.name


@dataclass(frozen=True)
class Compare:
    """A comparison of a term's weight with a number.

    Parameters
    ----------
    term : Term
        The term or wildcard whose weights are compared.
    op : str
        One of ``<``, ``<=``, ``>``, ``>=``, ``=``, ``!=``.
    value : float
        The number compared with.
    """

    term: Term
    op: str
    value: float


@dataclass(frozen=True)
class Not:
    """Every study not selected by ``child``."""

    child: object


@dataclass(frozen=True)
class And:
    """Studies selected by both ``left`` and ``right``."""

    left: object
    right: object


@dataclass(frozen=True)
class AndNot:
    """Studies selected by ``left`` but not by ``right``."""

    left: object
    right: object


@dataclass(frozen=True)
class Or:
    """Studies selected by ``left`` or ``right`` (or both)."""

    left: object
    right: object


_BINARY = (And, AndNot, Or)
_SYMBOL = {And: "&", AndNot: "&~", Or: "|"}
_PRECEDENCE = {Or: 1, And: 2, AndNot: 2, Not: 3, Term: 4, Compare: 4}


def _normalise(name):
    return " ".join(name.lower().split())


def render(node, explicit=False):
    """Write a tree back as an expression.

    Parameters
    ----------
    node : Term, Compare, Not, And, AndNot or Or
        A tree from :func:`parse`.
    explicit : bool, optional
        Also parenthesise ``&``/``&~`` groups inside ``|`` (which precedence
        alone would group the same way); by default parentheses are written
        only where needed.

    Returns
    -------
    str
        An expression that :func:`parse` reads back as the same tree.
    """
    if isinstance(node, Term):
        return node.name if _BARE_TERM.fullmatch(node.name) else f'"{node.name}"'
    if isinstance(node, Compare):
        return f"{render(node.term)} {node.op} {node.value!r}"
    if isinstance(node, Not):
        inner = render(node.child, explicit)
        return f"~{inner}" if _PRECEDENCE[type(node.child)] >= 3 else f"~({inner})"
    spine = []  # walk the left spine without recursion (long chains of '|')
    while isinstance(node, _BINARY) and (not spine or (
            _PRECEDENCE[type(node)] == _PRECEDENCE[type(spine[-1])]
            and not _needs_parens(node, spine[-1], explicit, right=False))):
        spine.append(node)
        node = node.left
    text = render(node, explicit)
    if spine and _needs_parens(node, spine[-1], explicit, right=False):
        text = f"({text})"
    for op in reversed(spine):
        right = render(op.right, explicit)
        if _needs_parens(op.right, op, explicit, right=True):
            right = f"({right})"
        text = f"{text} {_SYMBOL[type(op)]} {right}"
    return text


def _needs_parens(child, parent, explicit, right):
    child_prec, parent_prec = _PRECEDENCE[type(child)], _PRECEDENCE[type(parent)]
    if child_prec < parent_prec or (right and child_prec == parent_prec):
        return True
    if not explicit or not isinstance(child, _BINARY):
        return False
    # a '&~' followed by another '&'/'&~' groups differently in Neurosynth
    return child_prec != parent_prec or isinstance(child, AndNot)


# ------------------------------------------------------------------------- parser


class _ActionError(Exception):
    """A problem found by a parse action, reported by :func:`parse` as a CbmaError."""


def _term_action(s, loc, toks):
    raw = toks[0]
    if raw.startswith('"'):
        name = _normalise(raw[1:-1])
        if not name:
            raise _ActionError(f"empty quoted term at position {loc}")
    else:
        name = _normalise(raw)
    return Term(name, loc)


def _number_action(s, loc, toks):
    text = toks[0]
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise _ActionError(f"bad comparison number {text!r} at position {loc}: expected a "
                           "finite number such as 0.01")
    return value


def _operand_action(toks):
    if len(toks) == 1:
        return toks[0]
    term, op, value = toks
    return Compare(term, "=" if op == "==" else op, value)


def _not_action(toks):
    *tildes, node = toks
    return Not(node) if len(tildes) % 2 else node


def _fold_action(toks):
    node = toks[0]
    for i in range(1, len(toks), 2):
        cls = {"&": And, "&~": AndNot, "|": Or}[toks[i]]
        node = cls(node, toks[i + 1])
    return node


@cache
def _grammar():
    term = pp.Regex(r'"[^"]*"') | pp.Regex(_BARE_TERM.pattern)
    term.set_parse_action(_term_action)
    cmp_op = pp.Regex(r"<=|>=|==|!=|<|>|=")
    number = pp.Regex(r'[^\s()&|~<>=!"]+').set_parse_action(_number_action)
    operand = (term + pp.Optional(cmp_op - number)).set_parse_action(_operand_action)
    expr = pp.Forward()
    primary = operand | (pp.Suppress("(") - expr - pp.Suppress(")"))
    tilde = pp.Literal("~")
    negated = ((pp.OneOrMore(tilde) - primary) | primary).set_parse_action(_not_action)
    and_op = pp.Regex(r"&~|&")
    conjunction = (negated + pp.ZeroOrMore(and_op - negated)).set_parse_action(_fold_action)
    expr <<= (conjunction + pp.ZeroOrMore(pp.Literal("|") - conjunction))
    expr.set_parse_action(_fold_action)
    return expr


def _scan(expression):
    """Check quotes and parentheses; return each parenthesis level's binary operators, in order."""
    stack = [[]]  # operators seen at each open level
    opened = []
    levels = []
    i, n = 0, len(expression)
    while i < n:
        c = expression[i]
        if c == '"':
            end = expression.find('"', i + 1)
            if end < 0:
                raise CbmaError(f"term expression {expression!r}: unterminated double quote "
                                f"at position {i}")
            i = end
        elif c == "(":
            opened.append(i)
            stack.append([])
            if len(opened) > MAX_DEPTH:
                raise CbmaError(f"term expression {expression!r}: parentheses nested more "
                                f"than {MAX_DEPTH} deep at position {i}")
        elif c == ")":
            if not opened:
                raise CbmaError(f"term expression {expression!r}: unbalanced parentheses: "
                                f"')' at position {i} has no matching '('")
            opened.pop()
            levels.append(stack.pop())
        elif c == "&" and expression.startswith("&~", i):
            stack[-1].append("&~")
            i += 1
        elif c in "&|":
            stack[-1].append(c)
        i += 1
    if opened:
        raise CbmaError(f"term expression {expression!r}: unbalanced parentheses: '(' at "
                        f"position {opened[-1]} is never closed")
    levels.append(stack.pop())
    return levels


def _found(expression, loc):
    rest = expression[loc:]
    if rest.startswith('"'):
        token = rest[: rest.find('"', 1) + 1]
    else:
        m = re.match(rf"{_WORD}|<=|>=|==|!=|&~|.", rest, re.DOTALL)
        token = m.group(0)
    return token if len(token) <= 20 else token[:20] + "..."


def _syntax_error(expression, loc):
    n = len(expression)
    while loc < n and expression[loc].isspace():
        loc += 1
    before = expression[:loc].rstrip()
    if not before:
        what = "expected a term"
    elif before.endswith("&~"):
        what = "expected a term after '&~'"
    elif before[-1] in "&|~(":
        what = f"expected a term after {before[-1]!r}"
    elif _CMP_AT_END.search(before):
        what = f"expected a number after {_CMP_AT_END.search(before).group(0)!r}"
    else:
        what = "expected an operator ('&', '&~' or '|')"
    message = f"term expression {expression!r}: {what} at position {loc}"
    if loc < n:
        message += f", found {_found(expression, loc)!r}"
    return CbmaError(message)


def parse(expression):
    """Parse a term expression into a tree.

    Parameters
    ----------
    expression : str
        A term expression (see the module documentation for the syntax).

    Returns
    -------
    Term, Compare, Not, And, AndNot or Or
        The root of the tree; binary operators nest to the left
        (``a & b & c`` is ``And(And(a, b), c)``).

    Raises
    ------
    CbmaError
        If the expression is empty or not valid; the message gives the
        position (counted from 0) and what was expected there.
    """
    if not isinstance(expression, str):
        raise CbmaError(f"term expression must be a string, got {type(expression).__name__}")
    if not expression.strip():
        raise CbmaError(f"term expression {expression!r} is empty: expected a term such as "
                        "'emotion' or 'pain &~ reward'")
    _scan(expression)
    # pyparsing skips only ASCII white space: make every white space character a plain
    # space (which keeps positions) so that, e.g., a tab or non-breaking space separates
    text = "".join(" " if c.isspace() else c for c in expression)
    try:
        return _grammar().parse_string(text, parse_all=True)[0]
    except pp.ParseBaseException as err:
        raise _syntax_error(expression, err.loc) from None
    except _ActionError as err:
        raise CbmaError(f"term expression {expression!r}: {err}") from None
    except RecursionError:
        raise CbmaError(f"term expression {expression!r} is nested too deeply") from None


def _ambiguity(expression, tree):
    for ops in _scan(expression):
        if "|" in ops and ("&" in ops or "&~" in ops):
            reading = render(tree, explicit=True)
            return (f"term expression {expression!r} mixes '|' with '&'/'&~' without "
                    f"parentheses; cbma reads it as {reading!r} ('&' and '&~' bind tighter "
                    "than '|'), but Neurosynth's parser groups it differently: add "
                    "parentheses to make the grouping explicit")
        if "&~" in ops[:-1]:
            reading = render(tree, explicit=True)
            return (f"term expression {expression!r} follows '&~' with another '&'/'&~' "
                    f"without parentheses; cbma reads it as {reading!r} (from the left), but "
                    "Neurosynth's parser groups it from the right: add parentheses to make "
                    "the grouping explicit")
    return None


def ambiguity_warning(expression):
    """Describe how an unparenthesised mixture of ``|`` and ``&`` is read.

    Parameters
    ----------
    expression : str
        A term expression.

    Returns
    -------
    str or None
        A one-line warning when, inside one pair of parentheses (or at the top
        level), ``|`` is mixed with ``&`` or ``&~``, or ``&~`` is followed by
        another ``&`` or ``&~`` (the cases where cbma's precedence and
        Neurosynth's right-to-left grouping read the expression differently);
        it shows cbma's reading with explicit parentheses. None when the
        expression is unambiguous.

    Raises
    ------
    CbmaError
        If the expression cannot be parsed.
    """
    return _ambiguity(expression, parse(expression))


# ------------------------------------------------------------------------ selection


class _Vocabulary:
    """Term columns of a weight table, looked up by normalised name."""

    def __init__(self, weights):
        if isinstance(weights, pd.DataFrame):
            self.ids = np.asarray(weights.index, dtype=object)
            names = [str(c) for c in weights.columns]
            self._frame = weights
            self._matrix = None
        elif isinstance(weights, tuple) and len(weights) == 3:
            matrix, ids, names = weights
            self.ids = np.asarray(list(ids), dtype=object)
            names = [str(t) for t in names]
            try:
                import scipy.sparse as sp

                matrix = sp.csc_matrix(matrix) if sp.issparse(matrix) else np.asarray(matrix)
            except Exception as err:
                raise CbmaError(f"term weights: cannot read the matrix ({err})") from None
            if matrix.ndim != 2 or matrix.shape != (len(self.ids), len(names)):
                raise CbmaError(f"term weights: the matrix has shape {matrix.shape}, expected "
                                f"({len(self.ids)} studies, {len(names)} terms)")
            self._frame = None
            self._matrix = matrix
        else:
            raise CbmaError("term weights must be a pandas DataFrame (studies x terms) or a "
                            f"(matrix, study_ids, terms) tuple, got {type(weights).__name__}")
        self.columns = {}
        for j, name in enumerate(names):
            self.columns.setdefault(_normalise(name), []).append(j)
        self.names = sorted(self.columns)
        self._cache = {}

    def values(self, j):
        """Weights of column ``j`` as floats, missing values as 0."""
        if j not in self._cache:
            if self._frame is not None:
                column = self._frame.iloc[:, j]
            else:
                column = self._matrix[:, j]
                column = column.toarray() if hasattr(column, "toarray") else column
            try:
                values = np.asarray(column, dtype=float).ravel()
            except (TypeError, ValueError):
                raise CbmaError(f"term weights for {self.names_of(j)!r} are not numbers") from None
            self._cache[j] = np.nan_to_num(values, nan=0.0)
        return self._cache[j]

    def names_of(self, j):
        return next(name for name, cols in self.columns.items() if j in cols)

    def lookup(self, term, expression):
        """Column indices of a term or wildcard; CbmaError if there are none."""
        if not term.is_wildcard:
            if term.name in self.columns:
                return self.columns[term.name]
            near = difflib.get_close_matches(term.name, self.names, n=5)
            hint = f"did you mean {_quote_list(near)}?" if near else "no similar terms"
            words = term.name.split()
            if len(words) > 1 and all(w in self.columns for w in words):
                hint += " (to combine separate terms, join them with '&' or '|')"
            raise CbmaError(f"term expression {expression!r}: unknown term {term.name!r} at "
                            f"position {term.pos}; {hint}")
        pattern = re.compile(".*".join(re.escape(part) for part in term.name.split("*")))
        columns = [j for name in self.names if pattern.fullmatch(name)
                   for j in self.columns[name]]
        if columns:
            return columns
        stem = term.name.replace("*", "")
        prefixes = {}
        for name in self.names:
            prefixes.setdefault(name[: len(stem)], []).append(name)
        near = [name for p in difflib.get_close_matches(stem, prefixes, n=5)
                for name in prefixes[p]][:5]
        near = near or difflib.get_close_matches(stem, self.names, n=5)
        hint = f"near matches: {_quote_list(near)}" if near else "no similar terms"
        raise CbmaError(f"term expression {expression!r}: wildcard {term.name!r} at position "
                        f"{term.pos} matches no term in the vocabulary; {hint}")


def _quote_list(names):
    return ", ".join(repr(n) for n in names)


def _neurosynth_leaf(node, vocab, threshold, expression):
    """Neurosynth: a term's weight is the sum over the columns it matches; a
    comparison narrows the studies at the threshold, with '>' meaning '>='."""
    term = node.term if isinstance(node, Compare) else node
    weight = np.zeros(len(vocab.ids))
    for j in vocab.lookup(term, expression):
        weight += vocab.values(j)
    mask = weight >= threshold
    if isinstance(node, Compare):
        mask &= _NEUROSYNTH_COMPARISONS[node.op](weight, node.value)
    return mask


def _cbma_leaf(node, vocab, threshold, expression):
    """cbma: any matching column passes; a comparison tests every study's weight."""
    if isinstance(node, Compare):
        columns = vocab.lookup(node.term, expression)
        compare, value = _COMPARISONS[node.op], node.value
    else:
        columns = vocab.lookup(node, expression)
        compare, value = np.greater_equal, threshold
    mask = np.zeros(len(vocab.ids), dtype=bool)
    for j in columns:
        mask |= compare(vocab.values(j), value)
    return mask


def _evaluate(node, leaf):
    if isinstance(node, (Term, Compare)):
        return leaf(node)
    if isinstance(node, Not):
        return ~_evaluate(node.child, leaf)
    spine = []  # iterate down the left spine so long chains do not recurse deeply
    while isinstance(node, _BINARY):
        spine.append(node)
        node = node.left
    mask = _evaluate(node, leaf)
    for op in reversed(spine):
        right = _evaluate(op.right, leaf)
        if isinstance(op, And):
            mask = mask & right
        elif isinstance(op, AndNot):
            mask = mask & ~right
        else:
            mask = mask | right
    return mask


def select(expression, weights, frequency_threshold=0.001, semantics="neurosynth"):
    """Select the studies matching a term expression.

    Parameters
    ----------
    expression : str
        A term expression (see the module documentation).
    weights : pandas.DataFrame or tuple
        Term weights: a DataFrame indexed by study id with one column per term,
        or a ``(matrix, study_ids, terms)`` tuple with a scipy.sparse (or
        dense) studies x terms matrix.
    frequency_threshold : float, optional
        The weight a study needs for a bare term to select it.
    semantics : {"neurosynth", "cbma"}, optional
        ``"neurosynth"`` (default): Neurosynth's meaning, where a wildcard's
        weight is the sum of the weights of the terms it matches and a
        comparison (``>`` meaning at least) narrows the studies that pass the
        threshold. ``"cbma"``: a wildcard selects a study when any matching
        term passes, and a comparison tests the weight of every study,
        without the threshold. See the module documentation.

    Returns
    -------
    numpy.ndarray
        The selected study ids, sorted, without repeats.

    Raises
    ------
    CbmaError
        On a syntax error, an unknown term, a wildcard matching no term, a bad
        threshold, semantics or weight table, or when no study is selected.

    Warns
    -----
    UserWarning
        When Neurosynth's parser would group the expression differently
        (see :func:`ambiguity_warning`).
    """
    try:
        threshold = float(frequency_threshold)
    except (TypeError, ValueError):
        threshold = math.nan
    if isinstance(frequency_threshold, bool) or not math.isfinite(threshold):
        raise CbmaError(f"frequency_threshold must be a finite number, got "
                        f"{frequency_threshold!r}")
    leaves = {"neurosynth": _neurosynth_leaf, "cbma": _cbma_leaf}
    if not isinstance(semantics, str) or semantics not in leaves:
        raise CbmaError(f"semantics must be one of {', '.join(map(repr, SEMANTICS))}, got "
                        f"{semantics!r}")
    tree = parse(expression)
    message = _ambiguity(expression, tree)
    if message:
        warnings.warn(message, UserWarning, stacklevel=2)
    vocab = _Vocabulary(weights)
    leaf = leaves[semantics]
    mask = _evaluate(tree, lambda node: leaf(node, vocab, threshold, expression))
    if not mask.any():
        raise CbmaError(f"term expression {expression!r} selects no studies at "
                        f"frequency_threshold={threshold:g} ({semantics} semantics)")
    chosen = set(vocab.ids[mask].tolist())
    try:
        ordered = sorted(chosen)
    except TypeError:
        ordered = sorted(chosen, key=str)
    return np.asarray(ordered)
