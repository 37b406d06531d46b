"""String kernels: StringNormalizer, StringConcat, StringSplit, RegexFullMatch and TfIdfVectorizer.

Strings are numpy object arrays of Python ``str``.

- StringNormalizer drops the elements of a ``[C]`` or ``[1, C]`` tensor that equal a stop word (compared
  after lower-casing both unless ``is_case_sensitive``), then maps the survivors through ``str.lower`` /
  ``str.upper`` character by character (one code point in, one out, as onnxruntime's ``towlower``). No
  survivor gives ``[""]`` (shape ``[1]`` or ``[1, 1]``). ``locale`` is accepted; Unicode case mapping is
  locale-independent here.
- StringConcat is ``x + y`` element-wise with NumPy broadcasting.
- StringSplit splits every element with ``str.split(delimiter, maxsplit)``; an unset or empty delimiter
  splits on runs of whitespace. Output 0 is ``input.shape + [max_count]`` padded with ``""``, output 1 the
  int64 counts.
- RegexFullMatch is ``re.fullmatch`` after translating the RE2-only spellings ``\\z``, ``\\Q...\\E`` and the
  POSIX classes ``[[:alpha:]]`` (and friends) into Python syntax.
- TfIdfVectorizer counts, for every row ``x`` of a ``[C]`` / ``[B, C]`` input, the n-grams
  ``(x[s], x[s + d], ..., x[s + (n - 1) d])`` with ``n`` in ``[min_gram_length, max_gram_length]`` and
  ``d - 1`` skipped items, ``d`` in ``[1, max_skip_count + 1]`` (unigrams once), that appear in the pool.
  ``f[j]`` is the count of the pool n-gram at output coordinate ``ngram_indexes[i] = j``; the output is
  ``TF: f``, ``IDF: w[j] * (f > 0)``, ``TFIDF: w[j] * f`` (``w`` indexed by output coordinate, as onnxruntime
  does; all ones when ``weights`` is absent), float32.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.registry import kernel


def _strings(x: np.ndarray, what: str) -> np.ndarray:
    if x.dtype.kind not in "OU":
        raise InvalidArgument(f"{what}: expected a string tensor, got {x.dtype}")
    return x.astype(object) if x.dtype.kind == "U" else x


def _change_case(text: str, upper: bool) -> str:
    changed = text.upper() if upper else text.lower()
    if len(changed) == len(text):
        return changed
    # one code point in, one out (ß stays ß, İ stays one character)
    out = []
    for ch in text:
        mapped = ch.upper() if upper else ch.lower()
        out.append(mapped if len(mapped) == 1 else ch)
    return "".join(out)


@kernel("StringNormalizer", since=10)
def StringNormalizer(
    X: np.ndarray,
    *,
    case_change_action: str = "NONE",
    is_case_sensitive: int = 0,
    locale: str = "",
    stopwords: list[str] | None = None,
) -> np.ndarray:
    X = _strings(X, "StringNormalizer")
    if not (X.ndim == 1 or (X.ndim == 2 and X.shape[0] == 1)):
        raise InvalidArgument(f"StringNormalizer: the input must have shape [C] or [1, C], got {list(X.shape)}")
    if case_change_action not in ("NONE", "LOWER", "UPPER"):
        raise InvalidArgument(f"StringNormalizer: unknown case_change_action {case_change_action!r}")
    words = [str(w) for w in X.reshape(-1).tolist()]
    if stopwords:
        if is_case_sensitive:
            stops = set(stopwords)
            words = [w for w in words if w not in stops]
        else:
            stops = {_change_case(s, False) for s in stopwords}
            words = [w for w in words if _change_case(w, False) not in stops]
    if case_change_action != "NONE":
        upper = case_change_action == "UPPER"
        words = [_change_case(w, upper) for w in words]
    if not words:
        words = [""]
    out = np.empty(len(words), dtype=object)
    out[:] = words
    return out if X.ndim == 1 else out.reshape(1, -1)


@kernel("StringConcat", since=20)
def StringConcat(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    x, y = _strings(X, "StringConcat's X"), _strings(Y, "StringConcat's Y")
    try:
        shape = np.broadcast_shapes(x.shape, y.shape)
    except ValueError as exc:
        raise InvalidArgument(f"StringConcat: shapes {list(x.shape)} and {list(y.shape)} do not broadcast") from exc
    out = np.empty(shape, dtype=object)
    if out.size:
        np.add(x, y, out=out)
    return out


@kernel("StringSplit", since=20)
def StringSplit(
    X: np.ndarray, *, delimiter: str | None = None, maxsplit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    X = _strings(X, "StringSplit")
    sep = delimiter or None
    limit = -1 if maxsplit is None else int(maxsplit)
    if limit < -1:
        raise InvalidArgument(f"StringSplit: maxsplit must be non-negative, got {maxsplit}")
    parts = [str(s).split(sep, limit) for s in X.reshape(-1).tolist()]
    counts = np.array([len(p) for p in parts], dtype=np.int64).reshape(X.shape)
    width = max((len(p) for p in parts), default=0)
    out = np.full((len(parts), width), "", dtype=object)
    for row, pieces in enumerate(parts):
        out[row, : len(pieces)] = pieces
    return out.reshape(*X.shape, width), counts


_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}


@lru_cache(maxsize=256)
def _compile_re2(pattern: str) -> re.Pattern[str]:
    """Compile an RE2 pattern with Python's ``re``, translating the spellings that differ."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("\\Q", i):
            end = pattern.find("\\E", i + 2)
            end = len(pattern) if end < 0 else end
            out.append(re.escape(pattern[i + 2 : end]))
            i = end + 2
        elif pattern.startswith("\\z", i):
            out.append("\\Z")
            i += 2
        elif pattern[i] == "\\" and i + 1 < len(pattern):
            out.append(pattern[i : i + 2])
            i += 2
        elif pattern.startswith("[:", i) and (match := re.match(r"\[:(\^?)([a-z]+):\]", pattern[i:])):
            negate, name = match.groups()
            if name not in _POSIX_CLASSES or negate:
                raise InvalidArgument(f"RegexFullMatch: unsupported POSIX class {match.group(0)!r}")
            out.append(_POSIX_CLASSES[name])
            i += match.end()
        else:
            out.append(pattern[i])
            i += 1
    try:
        return re.compile("".join(out))
    except re.error as exc:
        raise InvalidArgument(f"RegexFullMatch: invalid pattern {pattern!r}: {exc}") from exc


@kernel("RegexFullMatch", since=20)
def RegexFullMatch(X: np.ndarray, *, pattern: str = "") -> np.ndarray:
    X = _strings(X, "RegexFullMatch")
    regex = _compile_re2(pattern)
    flat = [regex.fullmatch(str(s)) is not None for s in X.reshape(-1).tolist()]
    return np.array(flat, dtype=np.bool_).reshape(X.shape)


class _NgramPool:
    """The pool n-grams of the requested lengths, keyed by tuple, mapped to their output coordinate."""

    def __init__(
        self,
        pool: list[int] | list[str],
        ngram_counts: list[int],
        ngram_indexes: list[int],
        min_gram: int,
        max_gram: int,
    ) -> None:
        self.lengths: dict[int, dict[tuple[int | str, ...], int]] = {}
        position = 0  # index of the n-gram within the pool, the key into ngram_indexes
        for level, start in enumerate(ngram_counts):
            n = level + 1
            end = ngram_counts[level + 1] if level + 1 < len(ngram_counts) else len(pool)
            count = max(end - start, 0) // n
            if min_gram <= n <= max_gram:
                table = self.lengths.setdefault(n, {})
                for k in range(count):
                    if position + k >= len(ngram_indexes):
                        raise InvalidArgument("TfIdfVectorizer: ngram_indexes is shorter than the pool")
                    table[tuple(pool[start + k * n : start + (k + 1) * n])] = ngram_indexes[position + k]
            position += count


@kernel("TfIdfVectorizer", since=9)
def TfIdfVectorizer(
    X: np.ndarray,
    *,
    max_gram_length: int,
    max_skip_count: int,
    min_gram_length: int,
    mode: str,
    ngram_counts: list[int],
    ngram_indexes: list[int],
    pool_int64s: list[int] | None = None,
    pool_strings: list[str] | None = None,
    weights: list[float] | None = None,
) -> np.ndarray:
    if mode not in ("TF", "IDF", "TFIDF"):
        raise InvalidArgument(f"TfIdfVectorizer: mode must be TF, IDF or TFIDF, got {mode!r}")
    if (pool_int64s is None) == (pool_strings is None):
        raise InvalidArgument("TfIdfVectorizer: exactly one of pool_int64s and pool_strings must be set")
    if not 1 <= min_gram_length <= max_gram_length or max_skip_count < 0:
        raise InvalidArgument(
            f"TfIdfVectorizer: need 1 <= min_gram_length ({min_gram_length}) <= max_gram_length "
            f"({max_gram_length}) and max_skip_count ({max_skip_count}) >= 0"
        )
    if X.ndim > 2 or (X.ndim == 2 and X.shape[0] < 1):
        raise InvalidArgument(f"TfIdfVectorizer: the input must be [C] or [B, C] with B > 0, got {list(X.shape)}")
    size = max(ngram_indexes) + 1 if ngram_indexes else 0
    pool: list[int] | list[str] = pool_int64s if pool_int64s is not None else pool_strings  # type: ignore[assignment]
    grams = _NgramPool(pool, ngram_counts, ngram_indexes, min_gram_length, max_gram_length)
    rows = X.reshape(1, -1) if X.ndim < 2 else X
    if pool_strings is not None:
        rows = _strings(rows, "TfIdfVectorizer")
    elif rows.dtype.kind not in "iu":
        raise InvalidArgument(f"TfIdfVectorizer: pool_int64s needs an integer input, got {rows.dtype}")
    counts = np.zeros((rows.shape[0], size), dtype=np.int64)
    for r, row in enumerate(rows.tolist()):
        length = len(row)
        for n, table in grams.lengths.items():
            for distance in range(1, (max_skip_count + 2) if n > 1 else 2):
                span = distance * (n - 1)
                for start in range(length - span):
                    hit = table.get(tuple(row[start : start + span + 1 : distance]))
                    if hit is not None:
                        counts[r, hit] += 1
    if mode == "TF":
        out = counts.astype(np.float32)
    else:
        scale = np.asarray(weights if weights else np.ones(size), dtype=np.float32)[:size]
        out = (scale * (counts > 0) if mode == "IDF" else scale * counts).astype(np.float32)
    return out.reshape(size) if X.ndim < 2 else out
