"""Atoms: the values a text holds, each as the kind of thing it is, normalised.

A value corroborates another only where it appears as the same kind of thing. ``13`` in
"June 13" is part of a date, not a number; ``40`` in "$40.00" is an amount; the ``1001``
inside ``ORD-1001`` is no number at all. So a text is read in two passes:

1. *special* atoms, each with its own normal form and a key prefixed by its kind: URLs
   (scheme and host folded, default port, fragment and trailing slash dropped; their
   host kept as a ``host`` atom too), e-mail addresses, IBANs (spaces dropped), dates
   (``2024-05-19``, ``19 May 2024``, ``May 19``: ISO, with ``--MM-DD`` for the month and
   day alone), times (``12:00``, ``3 pm`` → ``15:00``), phone numbers (digits), amounts
   (a number with a currency), and decimal / thousands-separated numbers;
2. *plain* tokens in what is left: ids, words and whole integers (canonical: ``0150`` →
   ``150``).

Labelling runs each pass once over the whole text with `re.findall`-style scans and
keeps a set of keys; the per-token work in Python happens only for the (rare) special
atoms and for the distinct plain tokens, which keeps labelling within a small factor of
one regex pass over the text (`bench/provenance.py`).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import NamedTuple
from urllib.parse import urlsplit

__all__ = [
    "AMOUNT",
    "Part",
    "canonical_number",
    "canonical_tokens",
    "index_keys",
    "normalise",
    "number_keys",
    "parse_text",
    "special_atoms",
]

# Key prefixes: a special atom's key cannot collide with a plain token (which never
# starts with a control character).
AMOUNT = "\x01a:"
DATE = "\x01d:"
TIME = "\x01t:"
EMAIL = "\x01e:"
URL = "\x01u:"
HOST = "\x01h:"
PHONE = "\x01p:"
IBAN = "\x01i:"
_KIND_OF_PREFIX = {
    AMOUNT: "amount",
    DATE: "date",
    TIME: "time",
    EMAIL: "email",
    URL: "url",
    HOST: "host",
    PHONE: "phone",
    IBAN: "iban",
}

_MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4,
    "apr": 4, "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8,
    "september": 9, "sept": 9, "sep": 9, "october": 10, "oct": 10, "november": 11, "nov": 11,
    "december": 12, "dec": 12,
}  # fmt: skip
_MONTH = "(?:" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_MONTH_PREFIXES = (
    "jan",
    "feb",
    "mar",
    "apr",
    "may",
    "jun",
    "jul",
    "aug",
    "sep",
    "oct",
    "nov",
    "dec",
)
_CURRENCY_WORDS = ("usd", "eur", "gbp", "chf", "jpy", "cad", "aud")
_CURRENCY = "(?:" + "|".join(_CURRENCY_WORDS) + ")"
# The first digit of an atom is not glued to what precedes it.
_G = r"(?<![\w.\-/:+]\d)"

# Every atom that starts with a digit, in one pass. The pattern opens with `\d` so that the
# scan skips every other character at C speed; after the first digit, the guard `_G` (that
# digit is not glued to what precedes it) fails most candidates at once. Longer forms first.
_DIGITAL = re.compile(
    rf"""\d(?:
      (?P<iban>(?<=(?<![\w])[a-z]{{2}}\d)\d(?:\ ?[a-z0-9]{{4}}){{2,7}}(?:\ ?[a-z0-9]{{1,4}})?(?!\w))
    | {_G}(?:
        (?P<iso>\d{{3}}[-/]\d{{1,2}}[-/]\d{{1,2}})(?:[t\ ](?P<iso_t>\d{{1,2}}:\d{{2}})
            (?::\d{{2}}(?:\.\d+)?)?(?:z|[+-]\d{{2}}:?\d{{2}})?)?(?![\w/]|-\d)
      | (?P<dmy>\d?[/.]\d{{1,2}}[/.]\d{{4}})(?![\w/.]\d)
      | (?P<day_month>\d?(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}(?![a-z])(?:,?\s+\d{{4}}(?!\w))?)
      | (?P<time>\d?:\d{{2}}(?::\d{{2}}(?:\.\d+)?)?(?:\s?[ap]\.?m(?![\w\-])\.?)?
            (?:z(?![\w\-])|[+-]\d{{2}}:?\d{{2}}(?!\d))?)
      | (?P<ampm>\d?\s?[ap]\.?m(?![\w\-])\.?)
      | (?P<phone>\d{{2}}-\d{{3}}-\d{{4}}(?![\w\-]))
      | (?P<amount>[\d,]*(?:\.\d+)?\s?(?:[€$£]|(?:{_CURRENCY}|dollars?|euros?|pounds?)(?!\w)))
      | (?P<number>\d{{0,2}}(?:,\d{{3}})+(?:\.\d+)?(?![\w]|[.,]\d)|\d*\.\d+(?![\w]|\.\d))
    ))""",
    re.VERBOSE,
)
# Atoms led by something else, each scanned only when its lead is in the text at all.
_NEGATIVE = re.compile(r"-(?<![\w\-.]-)\d[\d,]*(?:\.\d+)?(?![\w]|\.\d)")
_CURRENCY_LED = re.compile(r"(?:[$€£¥]\s?|(?<!\w)" + _CURRENCY + r"\s?)-?\d[\d,]*(?:\.\d+)?(?!\w)")
_MONTH_LED = re.compile(
    r"(?=[adfjmnos])(?<![\w\-])"
    + _MONTH
    + r"\s+\d{1,2}(?:st|nd|rd|th)?(?!\w|:)(?:,?\s+\d{4}(?!\w))?"
)
_PLUS_PHONE = re.compile(r"\+(?<![\w+]\+)\d{1,3}(?:[\s.\-]?\(?\d{1,4}\)?){2,5}(?!\w)")
_PAREN_PHONE = re.compile(r"\((?<![\w)]\()\d{2,4}\)\s?\d{3}[\s.\-]?\d{3,4}(?!\w)")
_AT = re.compile(r"@[\w\-]+(?:\.[\w\-]+)+")
_LOCAL_PART = re.compile(r"[\w.+\-]+")
_SCHEME = re.compile(r"(?:https?|ftp)://[^\s<>\"'`\\]+")
_WWW = re.compile(r"(?<![\w.@/])www\.[^\s<>\"'`\\]+")
# A plain token: a run of word characters, possibly joined by the punctuation that holds
# ids and paths together ("ord-1234", "vpn/client.conf", "ticket:t-1").
_PLAIN = re.compile(r"\w(?:[\w.@+\-/:]*\w)?")
_EXPONENT = re.compile(r"\d+(?:\.\d+)?e[+-]?\d+")
_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
_CLOCK = re.compile(r"(\d{1,2})(?::(\d{2}))?")
_MERIDIAN = re.compile(r"\s?([ap])\.?m")
_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_SPACE = re.compile(r"\s+")
_URL_TRAIL = ".,;:!?)]}'\""
_DIGITS = re.compile(r"\d")
_CONNECTORS = frozenset(
    [
        "at",
        "on",
        "in",
        "and",
        "or",
        "to",
        "from",
        "of",
        "the",
        "t",
        "z",
        "utc",
        "gmt",
        "by",
        "until",
        "till",
        "through",
        "-",
        ",",
        ";",
        "/",
        "&",
        "+",
        "with",
    ]
)


def normalise(text: str) -> str:
    """Unicode compatibility forms folded (NFKC) and case folded; white space kept."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return text.casefold()


def collapse(text: str) -> str:
    """`normalise`, with runs of white space made one space (for substring search)."""
    return _SPACE.sub(" ", normalise(text)).strip()


def canonical_number(text: str) -> str:
    """``150.00`` → ``150``, ``0150`` → ``150``, ``1E+2`` → ``100``; other text unchanged."""
    try:
        number = Decimal(text)
    except InvalidOperation:
        return text
    if not number.is_finite():
        return text
    return format(number.normalize(), "f")


def fast_number(text: str) -> str:
    """`canonical_number` for plain decimal text (``-?digits[.digits]``), without Decimal."""
    if text[0] in "123456789" and text.count(".") == 1 and text.replace(".", "").isdigit():
        whole, _, fraction = text.partition(".")  # the common case: 123.40
        fraction = fraction.rstrip("0")
        return whole + "." + fraction if fraction else whole
    if not _PLAIN_NUMBER.fullmatch(text):
        return canonical_number(text)
    sign = "-" if text.startswith("-") else ""
    whole, _, fraction = text.lstrip("-").partition(".")
    whole = whole.lstrip("0") or "0"
    fraction = fraction.rstrip("0")
    if whole == "0" and not fraction:
        return "0"
    return sign + whole + ("." + fraction if fraction else "")


def number_keys(value: int | float) -> tuple[str, ...] | None:
    """The keys a number argument is found under: a standalone number or an amount."""
    if isinstance(value, int):
        text = str(value)
    else:
        text = repr(value)
        if "n" in text:  # nan, inf
            return None
        text = canonical_number(text) if "e" in text else fast_number(text)
    return (text, AMOUNT + text)


# -- special atoms --------------------------------------------------------------------------


def _date_key(year: int | None, month: int, day: int) -> str | None:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    if year is None:
        return f"--{month:02d}-{day:02d}"
    return f"{year:04d}-{month:02d}-{day:02d}"


def _iso_date(text: str) -> list[str]:
    if len(text) == 10 and text[4] == "-" == text[7]:  # the common case, without ints
        month, day = text[5:7], text[8:]
        if "01" <= month <= "12" and "01" <= day <= "31":
            return [DATE + text, DATE + "--" + text[5:]]
        return []
    year, month, day = text.replace("/", "-").split("-")
    key = _date_key(int(year), int(month), int(day))
    return [] if key is None else [DATE + key, DATE + "--" + key[5:]]


def _dmy_date(text: str) -> list[str]:
    first, second, year = (int(n) for n in re.split(r"[/.]", text))
    keys: list[str] = []
    for month, day in ((second, first), (first, second)):  # 19/05 or 05/19: both readings
        key = _date_key(year, month, day)
        if key is not None and DATE + key not in keys:
            keys += [DATE + key, DATE + "--" + key[5:]]
    return keys


def _named_date(text: str) -> list[str]:
    numbers = [int(n) for n in re.findall(r"\d+", text)]
    words = [w for w in re.findall(r"[a-z]+", text) if w in _MONTHS]
    if not words or not numbers:
        return []
    day = numbers[0]
    year = numbers[1] if len(numbers) > 1 else None
    key = _date_key(year, _MONTHS[words[0]], day)
    if key is None:
        return []
    return [DATE + key] if year is None else [DATE + key, DATE + "--" + key[5:]]


def _time_key(text: str) -> list[str]:
    if len(text) >= 5 and text[2] == ":" and "m" not in text:  # 24-hour HH:MM[...]
        return [TIME + text[:5]] if text[:2] <= "23" and text[3:5] <= "59" else []
    clock = _CLOCK.match(text)
    if clock is None:
        return []
    hour, minute = int(clock.group(1)), int(clock.group(2) or 0)
    meridian = _MERIDIAN.search(text, clock.end()) if "m" in text else None
    if meridian:
        if not 1 <= hour <= 12:
            return []
        hour = hour % 12 + (12 if meridian.group(1) == "p" else 0)
    if hour > 23 or minute > 59:
        return []
    return [f"{TIME}{hour:02d}:{minute:02d}"]


def _url_keys(text: str) -> list[str]:
    if text.startswith("www."):
        text = "http://" + text
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return []
    if not host:
        return []
    netloc = host if port is None or port in (80, 443) else f"{host}:{port}"
    path = parts.path.rstrip("/")
    scheme = "http" if parts.scheme in ("http", "https") else parts.scheme
    url = f"{scheme}://{netloc}{path}" + (f"?{parts.query}" if parts.query else "")
    return [URL + url, HOST + host]


def _phone_keys(text: str) -> list[str]:
    digits = "".join(re.findall(r"\d", text))
    if len(digits) < 7:
        return []
    keys = [PHONE + digits]
    if len(digits) > 10:
        keys.append(PHONE + digits[-10:])
    return keys


def _amount_keys(text: str) -> list[str]:
    number = re.search(r"-?\d[\d,]*(?:\.\d+)?", text)
    if number is None:
        return []
    return [AMOUNT + fast_number(number.group().replace(",", ""))]


def _iban_keys(text: str) -> tuple[str, ...]:
    """An IBAN, spaces dropped; printed in groups, its last groups may be a word or a number
    that follows it, so the forms without them are kept too (at most three)."""
    groups = text.split(" ")
    keys: list[str] = []
    for end in range(len(groups), 0, -1):
        compact = "".join(groups[:end])
        if 15 <= len(compact) <= 34 and sum(c.isdigit() for c in compact) >= 10:
            keys.append(IBAN + compact)
        if len(keys) == 3:
            break
    if keys:
        keys.append(groups[0])  # its first run as a plain token, as a value alone reads it
    return tuple(keys)


class _Special(NamedTuple):
    start: int
    end: int
    kind: str
    keys: tuple[str, ...]


def _digital(text: str, out: list[_Special]) -> None:
    for m in _DIGITAL.finditer(text):
        kind = m.lastgroup
        start, end = m.span()
        atom = m.group()
        if kind == "iso_t":  # a date with its time: two atoms
            date_end = m.end("iso")
            out.append(_Special(start, date_end, "date", tuple(_iso_date(text[start:date_end]))))
            time_at = m.start("iso_t")
            out.append(_Special(time_at, end, "time", tuple(_time_key(m.group("iso_t")))))
        elif kind == "iso":
            out.append(_Special(start, end, "date", tuple(_iso_date(atom))))
        elif kind == "dmy":
            out.append(_Special(start, end, "date", tuple(_dmy_date(atom))))
        elif kind == "day_month":
            out.append(_Special(start, end, "date", tuple(_named_date(atom))))
        elif kind in ("time", "ampm"):
            out.append(_Special(start, end, "time", tuple(_time_key(atom))))
        elif kind == "phone":
            out.append(_Special(start, end, "phone", tuple(_phone_keys(atom))))
        elif kind == "amount":
            out.append(_Special(start, end, "amount", tuple(_amount_keys(atom))))
        elif kind == "number":
            out.append(_Special(start, end, "number", (fast_number(atom.replace(",", "")),)))
        elif kind == "iban":
            keys = _iban_keys(text[start - 2 : end])
            if keys:
                out.append(_Special(start - 2, end, "iban", keys))


def _specials(text: str) -> list[_Special]:
    """The special atoms of a normalised text, in order, not overlapping."""
    found: list[_Special] = []
    _digital(text, found)
    digital = len(found)  # in order, not overlapping
    if "-" in text:
        for m in _NEGATIVE.finditer(text):
            key = fast_number(m.group().replace(",", ""))
            found.append(_Special(m.start(), m.end(), "number", (key,)))
    if any(c in text for c in "$€£¥") or any(w in text for w in _CURRENCY_WORDS):
        for m in _CURRENCY_LED.finditer(text):
            found.append(_Special(m.start(), m.end(), "amount", tuple(_amount_keys(m.group()))))
    if any(month in text for month in _MONTH_PREFIXES):
        for m in _MONTH_LED.finditer(text):
            found.append(_Special(m.start(), m.end(), "date", tuple(_named_date(m.group()))))
    if "+" in text:
        for m in _PLUS_PHONE.finditer(text):
            # too few digits for a phone (`+00 0`): left to the plain tokens, never swallowed
            if keys := _phone_keys(m.group()):
                found.append(_Special(m.start(), m.end(), "phone", tuple(keys)))
    if "(" in text:
        for m in _PAREN_PHONE.finditer(text):
            if keys := _phone_keys(m.group()):
                found.append(_Special(m.start(), m.end(), "phone", tuple(keys)))
    if "@" in text:
        for m in _AT.finditer(text):
            at = m.start()
            # the local part (at most 64 characters), read backwards from the @: a forward
            # search would try every position of the window
            before = text[max(0, at - 64) : at][::-1]
            local = _LOCAL_PART.match(before)
            if local is not None:
                start = at - local.end()
                found.append(_Special(start, m.end(), "email", (EMAIL + text[start : m.end()],)))
    if "://" in text or "www." in text:
        for regex in (_SCHEME, _WWW):
            for m in regex.finditer(text):
                url = m.group().rstrip(_URL_TRAIL)
                keys = _url_keys(url)
                if keys:
                    found.append(_Special(m.start(), m.start() + len(url), "url", tuple(keys)))
    if len(found) > digital:
        found.sort(key=lambda s: (s.start, -s.end))
        return _without_overlaps(found)
    return found


def _without_overlaps(spans: list[_Special]) -> list[_Special]:
    out: list[_Special] = []
    end = -1
    for span in spans:
        if span.start >= end:
            out.append(span)
            end = span.end
    return out


def _rest(text: str, specials: list[_Special]) -> str:
    """``text`` with the special atoms blanked out (so their digits are not numbers)."""
    if not specials:
        return text
    pieces: list[str] = []
    at = 0
    for span in specials:
        pieces.append(text[at : span.start])
        at = span.end
    pieces.append(text[at:])
    return " ".join(pieces)


def _plain_key(token: str) -> str:
    if token[0] == "0" and token.isdigit():
        return str(int(token))
    if "e" in token and _EXPONENT.fullmatch(token):
        return canonical_number(token)
    return token


def index_keys(text: str) -> set[str]:
    """Every key under which ``text`` (already `normalise`d) corroborates a value."""
    specials = _specials(text)
    keys = set(_PLAIN.findall(_rest(text, specials)))
    odd = [
        t for t in keys if (t[0] == "0" and t.isdigit()) or ("e" in t and _EXPONENT.fullmatch(t))
    ]
    if odd:
        keys.difference_update(odd)
        keys.update(_plain_key(t) for t in odd)
    for span in specials:
        keys.update(span.keys)
    return keys


@dataclass(frozen=True, slots=True)
class Part:
    """One atom of a value to look up: the keys it may be found under, and its kind."""

    keys: tuple[str, ...]
    kind: str
    text: str


def _plain_part(token: str) -> Part:
    key = _plain_key(token)
    if _NUMBER.match(key):
        return Part((key, AMOUNT + key), "number", token)
    if "." in key and not key.startswith(".") and re.fullmatch(r"[a-z0-9\-.]+\.[a-z]{2,}", key):
        return Part((key, HOST + key), "host", token)
    return Part((key,), "token", token)


@functools.lru_cache(maxsize=8192)
def parse_text(text: str) -> tuple[tuple[Part, ...], bool]:
    """The atoms of a (normalised) value text, and whether it is *composite*: made only of
    atoms and connectors (``2024-05-19 at 12:00``, ``ORD-1, ORD-2``), so that it is
    corroborated when each atom is. A text with free words is not composite: it is looked
    up as a whole. Cached: the same ids and amounts are proposed again and again."""
    specials = _specials(text)
    parts = [_special_part(s, text) for s in specials if s.keys]
    words = False
    for token in _PLAIN.findall(_rest(text, specials)):
        if token in _CONNECTORS:
            continue
        words = words or not _DIGITS.search(token)
        parts.append(_plain_part(token))
    return tuple(parts), len(parts) > 1 and not words


def _special_part(span: _Special, text: str) -> Part:
    """A special atom as a value: a number or an amount is found as either."""
    keys = span.keys
    if span.kind == "number":
        keys = (keys[0], AMOUNT + keys[0])
    elif span.kind == "amount":
        keys = (keys[0], keys[0][len(AMOUNT) :])
    elif span.kind == "url":
        keys = keys[:1]  # the whole URL: a trusted host does not vouch for any path on it
    elif span.kind == "iban":
        keys = tuple(k for k in keys if k.startswith(IBAN))  # never its first group alone
    return Part(keys, span.kind, text[span.start : span.end])


def canonical_tokens(text: str) -> list[str]:
    """The atoms of ``text`` in order, as their normal forms (for people and tests)."""
    normal = normalise(text)
    out: list[str] = []
    for _start, key in _ordered(normal):
        prefix = key[:3] if key.startswith("\x01") else ""
        if prefix == HOST:
            continue
        out.append(key[len(prefix) :] if prefix else key)
    return out


def _ordered(text: str) -> Iterator[tuple[int, str]]:
    specials = _specials(text)
    items: list[tuple[int, str]] = []
    for span in specials:
        if span.keys:
            items.append((span.start, span.keys[0]))
    blanked = text
    for span in specials:
        blanked = blanked[: span.start] + " " * (span.end - span.start) + blanked[span.end :]
    for m in _PLAIN.finditer(blanked):
        items.append((m.start(), _plain_key(m.group())))
    return iter(sorted(items))


def kind_of_key(key: str) -> str:
    """The kind of thing a key stands for (``number``, ``token``, ``date``, ...)."""
    if key.startswith("\x01"):
        return _KIND_OF_PREFIX.get(key[:3], "token")
    return "number" if _NUMBER.match(key) else "token"


def special_atoms(text: str) -> list[tuple[str, str]]:
    """``(kind, text)`` of each special atom of a normalised text, in order."""
    return [(s.kind, text[s.start : s.end]) for s in _specials(text) if s.keys]
