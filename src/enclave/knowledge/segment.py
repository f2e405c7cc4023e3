"""Words for keyword search, Chinese included: jieba cuts, we lower-case and filter.

Neither SQLite's FTS5 (``unicode61``) nor PostgreSQL's ``simple`` configuration can split
Chinese into words, so chunks are indexed as *pre-segmented* text: the words of
:func:`terms` joined by spaces (:func:`index_text`), and a query is cut the same way
(:func:`query_terms`). jieba's search mode adds the shorter words inside long ones
(路由器 → 路由, 路由器), which helps recall on both sides.

English words get a light plural fold (``passwords`` → ``password``) — the same on both
sides and on both databases, so no stemmer of either database is involved. Words are
letter-and-digit runs only, so they can be quoted into an FTS5 or ``tsquery`` expression.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

WORD = re.compile(r"[^\W_]+")  # letters and digits; "_" separates, as in FTS5
MAX_WORD = 40  # longer runs (hashes, base64) are noise for keyword search

_STOPWORDS = """
    a an and are as at be been but by can could did do does for from had has have how i if
    in into is it its may me my no not of on or our should so than that the their them then
    there these they this to us was we were what when where which who why will with would
    you your
    的 了 是 在 和 与 及 或 也 都 就 而 把 被 对 吗 呢 吧 啊 我 你 他 她 它 我们 你们 他们
    这 那 这个 那个 一个 什么 怎么 怎样 如何 为什么 哪些 哪个 可以 能 能否 是否 请问 有 没有
"""
STOPWORDS = frozenset(_STOPWORDS.split())


@functools.cache
def _tokenizer() -> Any:
    """jieba's tokenizer, dictionary loaded once per process (~0.7 s, then cached on disk)."""
    import warnings

    with warnings.catch_warnings():  # jieba 0.42 imports pkg_resources, which warns
        warnings.simplefilter("ignore")
        import jieba  # type: ignore[import-untyped]

    logging.getLogger("jieba").setLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


def fold(word: str) -> str:
    """Lower case; an English plural loses its ``s`` (``keys`` → ``key``, not ``class``)."""
    word = word.lower()
    if word.isascii() and len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def terms(text: str) -> list[str]:
    """The searchable words of ``text``, in order, stopwords and punctuation left out."""
    found: list[str] = []
    for piece in _tokenizer().cut_for_search(text):
        for word in WORD.findall(piece):
            folded = fold(word)
            if folded not in STOPWORDS and len(folded) <= MAX_WORD:
                found.append(folded)
    return found


def index_text(text: str) -> str:
    """What the full-text index stores for ``text``: its words joined by spaces."""
    return " ".join(terms(text))


def query_terms(text: str) -> list[str]:
    """The distinct words of a query, in order of first appearance."""
    return list(dict.fromkeys(terms(text)))
