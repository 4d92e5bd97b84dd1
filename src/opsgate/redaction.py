"""Redaction: mask secrets and personal data before anything leaves the process.

Everything opsgate writes down (audit events, debug traces, logs) may outlive the run and
be read by people and systems that must never see a credential or a customer's personal
data. A `Redactor` replaces such values with markers before they are stored:

- ``[redacted:<kind>]`` when it has no salt (traces, logs: nothing to prove later);
- ``[redacted:<kind>:<16 hex>]`` when it has a salt: the hex is the start of
  ``HMAC-SHA256(salt, value)``. The audit trail keeps no value, yet whoever holds a value
  can prove it was there: `Redactor.fingerprint` gives the hex its marker carries. Because
  the hash is keyed, nobody without the salt can find a short, guessable value (a phone
  or card number) by hashing every candidate.

What is masked, in this order:

1. registered secrets (``secret:<NAME>``): exact values, longest first, everywhere;
2. then one pass of patterns: ``private_key`` (PEM blocks), ``bearer`` (the token after
   ``Bearer``), ``password`` (the value of ``password=...``, ``"token": "..."`` and the
   like; the key is kept), ``jwt``, ``api_key`` (``sk-``/``sk-ant-``, AWS ``AKIA``/``ASIA``,
   GitHub, Slack, Google), the caller's extra patterns, and with ``pii=True``: ``email``,
   ``iban`` (mod-97 valid), ``card`` (Luhn valid) and ``phone`` (9+ digits written the way
   phone numbers are, so ids, prices, dates and unix times stay).

It runs on every audit event and every span, so the common case, nothing to mask, is made
cheap. A string with no digit, ``@``, ``:``, ``=``, ``-`` or key prefix is returned after
one scan in C. Otherwise a few substring tests tell which kinds could occur, and only their
patterns run, compiled once per combination into one alternation (so the result is the
same as with all patterns: the ones left out could not have matched). Checks in Python
(Luhn, mod-97, digit counts) run only on text that already has the shape. Short strings
found clean are remembered, since keys and states repeat in every event.

Markers already in a text are left as they are, and a text that changed is passed again
(a marker can uncover a neighbour its value hid), so redacting twice changes nothing.

Who acted is not content to hide. The fields of an event that name an actor (the invoker
and the agent of a run, the approver of a call) are what an audit trail exists to keep,
so they are redacted as identities (`Redactor.redact_identity`): registered secrets,
credential patterns and the caller's extra patterns are still masked (a secret pasted as an
approver's name is never stored), personal data is not (``ops.bob@example.com`` stays).
`ACTOR_FIELDS` lists those fields per event type, once, for every writer (`redact_event`
applies it; the trace exporter keeps the same rule for the attributes that carry them).
Everything else in an event is content (reasons, arguments, results, requests) and is
redacted in full: an e-mail address in an approver's reason is still masked.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections.abc import Callable, Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final

from opsgate.recorder import EventType

__all__ = ["ACTOR_FIELDS", "Redactor"]

#: The actor fields of each event type: the data keys whose string value names who acted.
#: They are redacted as identities (`Redactor.redact_identity`: secrets and credentials
#: masked, personal data kept); every other field is content and redacted in full. A value
#: that is not a string is content too. Event types not listed have no actor field. Keep
#: this the one list: the audit log (through `Redactor.redact_event`) and the trace
#: exporter (its identity attributes) both follow it.
#:
#: - ``run_started``: ``invoker`` (the person or service that started the run) and
#:   ``agent_id`` (the agent identity it runs as);
#: - ``approval_granted`` / ``approval_denied``: ``approver`` (who decided, in process or
#:   through the durable approval queue; ``opsgate:...`` for opsgate's own answers);
#: - ``stage_changed``, ``budget_set`` / ``budget_cleared``: ``actor`` (who moved the stage,
#:   who set the budget; ``alert:<id>`` for an alert's demotion);
#: - ``token_created`` / ``token_revoked``: ``actor`` and the token's ``name``.
ACTOR_FIELDS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        EventType.RUN_STARTED: frozenset({"invoker", "agent_id"}),
        EventType.APPROVAL_GRANTED: frozenset({"approver"}),
        EventType.APPROVAL_DENIED: frozenset({"approver"}),
        EventType.STAGE_CHANGED: frozenset({"actor"}),
        EventType.TOKEN_CREATED: frozenset({"actor", "name"}),
        EventType.TOKEN_REVOKED: frozenset({"actor", "name"}),
        EventType.BUDGET_SET: frozenset({"actor"}),
        EventType.BUDGET_CLEARED: frozenset({"actor"}),
    }
)

_MIN_SALT_LEN = 16
_MIN_SECRET_LEN = 4  # shorter values would mask ordinary words
_MIN_KEYED_VALUE_LEN = 8  # `password` values shorter than this are left alone
_FINGERPRINT_HEX = 16
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-/]+")
_BUILTIN_KINDS = (
    "private_key",
    "api_key",
    "bearer",
    "jwt",
    "password",
    "email",
    "phone",
    "card",
    "iban",
)
_PII_KINDS = frozenset({"email", "phone", "card", "iban"})

# -- patterns -------------------------------------------------------------------------------
# Speed: every alternative starts with a literal or a character class (the engine skips an
# alternative whose first character does not fit without entering it), so "must not follow
# a word character" is written after the first character as a two-character look-behind:
# `[2-6](?<![\w.].)` is `(?<![\w.])[2-6]`. Runs are consumed possessively (`++`, `{n,}+`)
# where giving characters back cannot help, so nothing backtracks more than a few steps.

_MARKER_PREFIX = "[redacted:"
_MARKER_WORDS = "[redacted:" + " ".join(_BUILTIN_KINDS)  # a secret must not be part of these
_PRIVATE_KEY = (
    r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY[A-Z ]{0,10}-----"
    r"(?s:.*?-----END[A-Z0-9 ]{0,40}PRIVATE KEY[A-Z ]{0,10}-----|.*)"  # unterminated: to end
)
# The token must hold a digit or be long, so that prose ("the bearer of") stays.
_BEARER = (
    r"[Bb](?<![A-Za-z0-9].)(?:earer|(?<=B)EARER)[ \t]+"  # Bearer, bearer, BEARER
    r"(?P<bearer_v>(?:(?=[A-Za-z._~+/\-]*[0-9])[A-Za-z0-9._~+/\-]{8,}+"
    r"|[A-Za-z0-9._~+/\-]{20,}+)=*+)"
)
# key=value, key: value, "key": "value", 'key': 'value', key\": \"value (JSON in a JSON
# string). The key may have a prefix (DB_PASSWORD, client_secret, x-api-key).
_PASSWORD = (
    r"[PpSsAaTt](?:(?<=[Pp])[Aa][Ss][Ss][Ww](?:[Oo][Rr])?[Dd]|(?<=[Ss])[Ee][Cc][Rr][Ee][Tt]"
    r"|(?<=[Aa])[Pp][Ii][_\-]?[Kk][Ee][Yy]|(?<=[Tt])[Oo][Kk][Ee][Nn])"
    r"(?:\\?[\"'])?[ \t]*[:=][ \t]*"
    r"(?:\"(?P<password_dq>(?!\[redacted:)(?:[^\"\\\r\n]|\\.){8,}+)\""
    r"|'(?P<password_sq>(?!\[redacted:)(?:[^'\\\r\n]|\\.){8,}+)'"
    r"|(?:\\?[\"'])?(?P<password_v>(?!\[redacted:)[^\s\"',;&\\]{8,}+))"
)
_JWT = r"e(?<![A-Za-z0-9_\-].)yJ[A-Za-z0-9_\-]{4,}+\.[A-Za-z0-9_\-]{4,}+\.[A-Za-z0-9_\-]*+"
_API_KEY = (
    r"[sAgx](?<![A-Za-z0-9_\-].)(?:"
    r"(?<=s)k-(?:(?=[A-Za-z_\-]*[0-9])[A-Za-z0-9_\-]{20,}+|[A-Za-z0-9_\-]{40,}+)"  # OpenAI, ...
    r"|(?<=A)(?:KIA|SIA)[A-Z0-9]{16}(?![A-Za-z0-9])"  # AWS access key id
    r"|(?<=A)Iza[A-Za-z0-9_\-]{35,}+"  # Google
    r"|(?<=g)(?:h[pousr]_[A-Za-z0-9]{36,}+|ithub_pat_[A-Za-z0-9_]{22,}+)"  # GitHub
    r"|(?<=x)ox[abprs]-[A-Za-z0-9\-]{10,}+"  # Slack
    r")"
)
_EMAIL = (
    r"[A-Za-z0-9._%+\-](?<![A-Za-z0-9._%+\-].)[A-Za-z0-9._%+\-]*+@"
    r"(?:[A-Za-z0-9\-]++\.)+[A-Za-z]{2,63}(?![A-Za-z0-9\-])"
)
# Country code, 2 check digits, then the BBAN in groups of 4 (or not spaced at all); not
# inside an identifier (run_..., ORD-...). The country and mod-97 are checked after.
_IBAN = (
    r"[A-Z](?<![\w\-/].)[A-Z][0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?"
    r"(?![A-Za-z0-9])"
)
# Countries of the SWIFT IBAN registry and those with IBAN-like numbers (partners).
_IBAN_COUNTRY_CODES = (
    "AD AE AL AT AZ BA BE BG BH BI BR BY CH CR CY CZ DE DJ DK DO EE EG ES FI FK FO FR GB GE GI "
    "GL GR GT HN HR HU IE IL IQ IS IT JO KW KZ LB LC LI LT LU LV LY MC MD ME MK MN MR MT MU NI "
    "NL NO OM PK PL PS PT QA RO RS RU SA SC SD SE SI SK SM SO ST SV TL TN TR UA VA VG XK YE "
    "AO BF BJ CF CG CI CM CV DZ GA GQ GW IR KM MA MG ML MZ NE SN TD TG"
)
_IBAN_COUNTRIES = frozenset(_IBAN_COUNTRY_CODES.split())
# 13-19 digits with optional single spaces or dashes. The first digit is 2-6 (every major
# network), so millisecond unix times, which start with 1, stay.
_CARD = r"[2-6](?<![\w.].)(?:[ \-]?[0-9]){12,18}(?!\w)"
# + and groups; North American 3-3-4 with separators; national numbers with a trunk 0.
# Digit runs are possessive, so groups split only at separators. Bare digit runs without
# + or 0 (ids, unix times) are not phone numbers; 9+ digits are checked after the match.
_PHONE = (
    r"[0-9+(](?<![\w.\-+/].)(?:"
    r"(?<=\+)[0-9]++(?:[ .\-]?\([0-9]{1,5}\))?(?:[ .\-]?[0-9]++){0,6}"
    r"|(?<=1)[ .\-]?(?:\([0-9]{3}\)[ .\-]?|[0-9]{3}[ .\-])[0-9]{3}[ .\-][0-9]{4}"
    r"|(?<=\()[0-9]{3}\)[ .\-]?[0-9]{3}[ .\-][0-9]{4}"
    r"|(?<=[0-9])[0-9]{2}[ .\-][0-9]{3}[ .\-][0-9]{4}"
    r"|(?<=\()0(?!00)[0-9]++\)(?:[ .\-/]?[0-9]++){0,5}"
    r"|(?<=0)(?!00)[0-9]++(?:[ .\-/]?[0-9]++){0,5}"
    r")(?![\w\-+@]|[.,:/][0-9])"
)

# -- quick tests ---------------------------------------------------------------------------
# A string in which `_TRIGGER_RE` finds nothing cannot match any built-in pattern. It is an
# alternation of literals, so the engine scans for their first characters in C; those are
# characters that are rare in ordinary words (a lower-case letter would stop it often).
_TRIGGER_RE = re.compile(
    "|".join(
        [
            *"0123456789@:=-",  # numbers, e-mail, key=value, PEM, sk-..., xox?-...
            *("yJ", "Bearer", "bearer", "BEARER", "AKIA", "ASIA", "AIza"),  # yJ: eyJ (JWT)
            *("ghp_", "gho_", "ghs_", "ghu_", "ghr_", "github_pat_"),
        ]
    )
)
_trigger = _TRIGGER_RE.search
# Needed (not enough) for a JWT, a bearer token, an API key or a PEM block; same idea.
_RARE = ("yJ", "k-", "xox", "AKIA", "ASIA", "AIza", "gh", "github_pat_", "Bearer", "bearer")
_rare = re.compile("|".join([*_RARE, "BEARER"])).search
_SHORTEST_MATCH = 6  # "a@b.co"
# Short strings found clean are remembered (keys, names, states repeat in every event); the
# memo is emptied when full and replaced when a secret is added.
_CLEAN_CACHE_MAX_LEN = 64
_CLEAN_CACHE_SIZE = 4096
_MAX_PASSES = 8  # bounds a pathological extra pattern that matches inside its own marker
# A string's shape: digits -> 0, capitals -> A, lower case and _ -> a, - and / -> "-",
# space . ( ) + -> s, anything else -> x. A phone or card number needs 9 digits in a row
# once the separators (s and -) are dropped; an IBAN needs "AA00" at the start or after s/x.
_SHAPE = bytes(
    ord("0")
    if "0" <= chr(b) <= "9"
    else ord("A")
    if "A" <= chr(b) <= "Z"
    else ord("a")
    if "a" <= chr(b) <= "z" or chr(b) == "_"
    else ord("-")
    if chr(b) in "-/"
    else ord("s")
    if chr(b) in " .()+"
    else ord("x")
    for b in range(256)
)
_IBAN_AFTER = frozenset(b"sx")

_F_MARKER = 1 << 0
_F_PEM = 1 << 1
_F_BEARER = 1 << 2
_F_PASSWORD = 1 << 3
_F_JWT = 1 << 4
_F_API = 1 << 5
_F_EXTRA = 1 << 6
_F_EMAIL = 1 << 7
_F_IBAN = 1 << 8
_F_NUMBER = 1 << 9  # card, phone
_F_PII = _F_EMAIL | _F_IBAN | _F_NUMBER  # what an identity keeps

_CONTAINERS = (dict, list, tuple)
_SENSITIVE_KEYS = ("password", "passwd", "secret", "api_key", "api-key", "apikey", "token")


@lru_cache(maxsize=4096)
def _is_sensitive_key(key: str) -> bool:
    """Whether a mapping key names a credential (then its string value is masked whole)."""
    return key.lower().endswith(_SENSITIVE_KEYS)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_ok(text: str) -> bool:
    digits = text.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and _luhn_ok(digits)


def _iban_ok(compact: str) -> bool:
    if not 15 <= len(compact) <= 34 or compact[:2] not in _IBAN_COUNTRIES:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _phone_ok(text: str) -> bool:
    return sum(ch.isdigit() for ch in text) >= 9


def _keep(m: re.Match[str]) -> str:
    return m.group()


class Redactor:
    """Masks registered secrets, credentials and (optionally) personal data.

    Thread-safe: one instance can be shared by every writer of a process.

    Args:
        salt: None for markers without a hash (traces, logs); otherwise at least 16 bytes,
            and markers carry ``HMAC-SHA256(salt, value)`` truncated to 16 hex digits.
        secrets: Secret values to mask, by name (as `add_secret`).
        pii: Also mask e-mail addresses, phone numbers, card numbers and IBANs.
        extra_patterns: More patterns, as ``{kind: regex}``; a match is masked whole with
            kind ``kind``. Use scoped flags (``(?i:...)``), not global ones, and named rather
            than numbered back-references. With extra patterns every string is scanned.

    Raises:
        TypeError: the salt is not bytes.
        ValueError: the salt is shorter than 16 bytes, a secret is invalid (see
            `add_secret`), or an extra pattern is not a valid regex, matches the empty
            string or reuses a built-in kind.
    """

    def __init__(
        self,
        salt: bytes | None = None,
        *,
        secrets: Mapping[str, str] | None = None,
        pii: bool = True,
        extra_patterns: Mapping[str, str] | None = None,
    ) -> None:
        if salt is not None:
            if not isinstance(salt, bytes | bytearray):
                raise TypeError("salt must be bytes or None")
            if len(salt) < _MIN_SALT_LEN:
                raise ValueError(f"salt must be at least {_MIN_SALT_LEN} bytes")
        self._hmac = None if salt is None else hmac.new(bytes(salt), digestmod=hashlib.sha256)
        self._pii = pii
        self._extra = {kind: _check_extra(kind, p) for kind, p in (extra_patterns or {}).items()}
        self._always = _F_EXTRA if self._extra else 0
        self._lock = threading.Lock()  # counts
        self._config_lock = threading.Lock()  # add_secret
        self._counts: dict[str, int] = {}
        self._secret_names: dict[str, str] = {}  # value -> name
        self._names: set[str] = set()  # every name ever used: its markers stay protected
        self._secret_re: re.Pattern[str] | None = None
        for name, value in (secrets or {}).items():
            self._register(name, value)
        self._compile()

    # -- configuration ---------------------------------------------------------------------

    def add_secret(self, name: str, value: str) -> None:
        """Mask ``value`` wherever it appears, as kind ``secret:<name>``.

        A value registered earlier stays masked (a rotated secret may still turn up in old
        text); registering the same value again renames it.

        Raises:
            ValueError: ``name`` is empty or has characters other than letters, digits and
                ``_.-/``, or ``value`` is shorter than 4 characters or part of the text of
                its own marker (``secret``, ``redacted``, ...).
        """
        with self._config_lock:
            self._register(name, value)
            self._compile()

    def _register(self, name: str, value: str) -> None:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"secret name {name!r}: use letters, digits and _.-/ only")
        if len(value) < _MIN_SECRET_LEN:
            raise ValueError(
                f"secret {name!r} is shorter than {_MIN_SECRET_LEN} characters; masking it "
                "would mask ordinary words"
            )
        if value in f"{_MARKER_WORDS} {' '.join(self._extra)} secret:{name}]":
            raise ValueError(f"secret {name!r} is part of the markers that would replace it")
        self._secret_names[value] = name
        self._names.add(name)

    def _compile(self) -> None:
        """Build the secret pass and the pattern alternatives (again on every change)."""
        names = self._secret_names
        secret_re = None
        if names:
            ordered = sorted(names, key=len, reverse=True)
            secret_re = re.compile("|".join(re.escape(v) for v in ordered))
        kinds = [k for k in _BUILTIN_KINDS if self._pii or k not in _PII_KINDS]
        kinds += self._extra
        kinds += sorted(f"secret:{n}" for n in self._names)
        marker = (
            re.escape(_MARKER_PREFIX)
            + "(?:"
            + "|".join(re.escape(k) for k in kinds)
            + rf")(?::[0-9a-f]{{{_FINGERPRINT_HEX}}})?\]"
        )
        # (group, feature bit, pattern, handler), in the order they are tried at a position.
        alternatives: list[tuple[str, int, str, Callable[[re.Match[str]], str]]] = [
            ("marker", _F_MARKER, marker, _keep),
            ("private_key", _F_PEM, _PRIVATE_KEY, self._whole("private_key")),
            ("bearer", _F_BEARER, _BEARER, self._inner("bearer", ("bearer_v",))),
            (
                "password",
                _F_PASSWORD,
                _PASSWORD,
                self._inner("password", ("password_dq", "password_sq", "password_v")),
            ),
            ("jwt", _F_JWT, _JWT, self._whole("jwt")),
            ("api_key", _F_API, _API_KEY, self._whole("api_key")),
        ]
        for i, (kind, pattern) in enumerate(self._extra.items()):
            alternatives.append((f"extra{i}", _F_EXTRA, f"(?:{pattern})", self._whole(kind)))
        if self._pii:
            alternatives += [
                ("email", _F_EMAIL, _EMAIL, self._whole("email")),
                ("iban", _F_IBAN, _IBAN, self._iban),
                ("card", _F_NUMBER, _CARD, self._whole("card", _card_ok)),
                ("phone", _F_NUMBER, _PHONE, self._whole("phone", _phone_ok)),
            ]
        try:  # compile the full alternation now: fail early (extra patterns' group names)
            re.compile("|".join(f"{p}(?P<k_{g}>)" for g, _, p, _ in alternatives))
        except re.error as exc:
            raise ValueError(f"extra patterns do not combine: {exc}") from None
        # Swapped in one step each, the memo of clean strings last: a call that sees the new
        # memo sees the new secrets too, so nothing checked with old ones lands in it.
        self._secret_re = secret_re
        self._shortest_secret = min(map(len, names), default=0)
        self._marker_re = re.compile(marker)
        self._alternatives = alternatives
        self._handlers = {f"k_{group}": handler for group, _, _, handler in alternatives}
        self._variants: dict[int, re.Pattern[str]] = {}
        self._clean: dict[str, None] = {}  # short strings known to need nothing
        self._clean_identities: dict[str, None] = {}  # the same, as identities

    def _variant(self, features: int) -> re.Pattern[str]:
        """The alternation of the patterns whose features are present (compiled once)."""
        variant = self._variants.get(features)
        if variant is None:
            # An empty group at the end of each alternative names its kind (`lastgroup`).
            variant = re.compile(
                "|".join(
                    f"{pattern}(?P<k_{group}>)"
                    for group, bit, pattern, _ in self._alternatives
                    if bit & features
                )
            )
            self._variants[features] = variant
        return variant

    def _features(self, text: str) -> int:
        """Which kinds could occur in ``text``: cheap tests, each a condition without which
        the kind's pattern cannot match (so leaving the pattern out changes nothing)."""
        found = self._always
        n = len(text)
        if self._pii:
            if "@" in text:
                found |= _F_EMAIL
            if n >= 9:  # "012345678"
                shape = text.encode("ascii", "replace").translate(_SHAPE)
                # (bytes.find: `in` on bytes first tries the needle as an int, which is slow)
                if shape.translate(None, b"s-").find(b"000000000") != -1:
                    found |= _F_NUMBER
                at = shape.find(b"AA00") if n >= 15 else -1
                while at != -1:
                    if at == 0 or shape[at - 1] in _IBAN_AFTER:
                        found |= _F_IBAN
                        break
                    at = shape.find(b"AA00", at + 1)
        if n >= 13:  # eyJa1b2.c3d4.
            if n >= 14 and ("=" in text or ":" in text):  # token=12345678
                low = text.lower()
                if "passw" in low or "secret" in low or "key" in low or "token" in low:
                    found |= _F_PASSWORD
            if n >= 26 and "-----BEGIN" in text:  # -----BEGINPRIVATE KEY-----
                found |= _F_PEM
            if _rare(text) is not None:
                if "eyJ" in text:
                    found |= _F_JWT
                if n >= 15:  # xoxb-1234567890, Bearer 12345678
                    if "earer" in text or "EARER" in text:
                        found |= _F_BEARER
                    if (
                        "sk-" in text
                        or "xox" in text
                        or "AKIA" in text
                        or "ASIA" in text
                        or "AIza" in text
                        or "gh" in text
                        or "github_pat_" in text
                    ):
                        found |= _F_API
        if found and _MARKER_PREFIX in text:
            found |= _F_MARKER
        return found

    # -- masking ---------------------------------------------------------------------------

    def fingerprint(self, value: str) -> str | None:
        """The hex a marker carries for ``value``, or None when the redactor has no salt.

        This is how someone who holds a value proves a marker stands for it: the marker's
        hex equals ``fingerprint(value)`` for the exact text that was masked (for ``bearer``
        and ``password`` the token or value alone, without the key).
        """
        if self._hmac is None:
            return None
        mac = self._hmac.copy()
        mac.update(value.encode("utf-8", "surrogatepass"))
        return mac.hexdigest()[:_FINGERPRINT_HEX]

    @property
    def counts(self) -> Mapping[str, int]:
        """How many values of each kind were masked so far (a snapshot), for metrics."""
        with self._lock:
            return dict(self._counts)

    def _mark(self, kind: str, value: str) -> str:
        with self._lock:
            self._counts[kind] = self._counts.get(kind, 0) + 1
        fp = self.fingerprint(value)
        return f"[redacted:{kind}]" if fp is None else f"[redacted:{kind}:{fp}]"

    def _whole(
        self, kind: str, valid: Callable[[str], bool] | None = None
    ) -> Callable[[re.Match[str]], str]:
        def handle(m: re.Match[str]) -> str:
            text = m.group()
            if valid is not None and not valid(text):
                return text
            return self._mark(kind, text)

        return handle

    def _inner(self, kind: str, groups: tuple[str, ...]) -> Callable[[re.Match[str]], str]:
        def handle(m: re.Match[str]) -> str:
            text, base = m.group(), m.start()
            for group in groups:
                value = m.group(group)
                if value is not None:
                    start, end = m.span(group)
                    return text[: start - base] + self._mark(kind, value) + text[end - base :]
            return text  # pragma: no cover - every alternative sets one of the groups

        return handle

    def _iban(self, m: re.Match[str]) -> str:
        text = m.group()
        groups = text.split(" ")
        # A spaced IBAN can be followed by an unrelated group of 4: try shorter prefixes.
        for n in range(len(groups), 0, -1):
            if _iban_ok("".join(groups[:n])):
                head = " ".join(groups[:n])
                return self._mark("iban", head) + text[len(head) :]
        return text

    def redact_text(self, text: str) -> str:
        """``text`` with secrets, credentials and (with ``pii``) personal data masked."""
        clean = self._clean  # bound once: `add_secret` swaps in a new one
        if text in clean:
            return text
        return self._redact_text(text, clean, 0)

    def redact_identity(self, text: str) -> str:
        """An actor's identity (who invoked, ran as or approved): ``text`` with registered
        secrets, credentials and extra patterns masked, but personal data kept.

        An e-mail address, phone number or the like that names who acted is what an audit
        trail must keep (see `ACTOR_FIELDS`); a secret or a token pasted in its place is
        masked as anywhere else.
        """
        clean = self._clean_identities  # bound once: `add_secret` swaps in a new one
        if text in clean or text in self._clean:  # clean as content: clean as identity
            return text
        return self._redact_text(text, clean, _F_PII)

    def _redact_text(self, text: str, clean: dict[str, None], keep: int) -> str:
        out = self._pass(text, keep)
        if out is text:
            if len(text) <= _CLEAN_CACHE_MAX_LEN:
                if len(clean) >= _CLEAN_CACHE_SIZE:
                    clean.clear()
                clean[text] = None
            return text
        # A marker can uncover what its value hid: in "ana@example.com+44 20 7946 0958" the
        # "+" follows a letter, in "[redacted:email]+44 20 7946 0958" it does not. So pass
        # again until nothing changes (once more, in practice), so redacting is idempotent.
        for _ in range(_MAX_PASSES):
            again = self._pass(out, keep)
            if again is out:
                break
            out = again
        return out

    def _pass(self, text: str, keep: int = 0) -> str:
        """One pass: secrets, then the patterns but those of the ``keep`` features; ``text``
        itself when nothing changed."""
        out = text
        secret_re = self._secret_re
        if secret_re is not None and len(out) >= self._shortest_secret:
            out = secret_re.sub(self._secret_marker, out)
        if self._always or (len(out) >= _SHORTEST_MATCH and _trigger(out) is not None):
            features = self._features(out) & ~keep
            if features & ~_F_MARKER:  # markers alone: nothing to mask
                out = self._variant(features).sub(self._dispatch, out)
        return text if out == text else out

    def _secret_marker(self, m: re.Match[str]) -> str:
        value = m.group()
        return self._mark(f"secret:{self._secret_names[value]}", value)

    def _dispatch(self, m: re.Match[str]) -> str:
        return self._handlers[m.lastgroup or ""](m)

    def redact(self, value: Any) -> Any:
        """A redacted copy of ``value``; ``value`` itself is never changed.

        Strings go through `redact_text`; dicts (keys too), lists and tuples (as lists)
        are redacted recursively; anything else is returned as it is. A string of 8 or more
        characters under a dict key that names a credential (ends in ``password``,
        ``passwd``, ``secret``, ``api_key``, ``apikey`` or ``token``) is masked whole as
        ``password`` (or as its secret, if it is a registered one), unless it holds a marker
        already.
        """
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, dict):
            return self._redact_dict(value)
        if isinstance(value, list | tuple):
            return self._redact_list(value)
        return value

    def redact_event(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """A redacted copy of an event's ``data``: its actor fields (`ACTOR_FIELDS` of
        ``kind``) as identities (`redact_identity`), everything else as `redact` does.

        This is what the audit trail stores: who acted stays readable, with secrets and
        credentials still masked; reasons, arguments and results are content.
        """
        actors = ACTOR_FIELDS.get(kind)
        if actors is None:
            return self._redact_dict(data)
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key in actors and isinstance(value, str):
                out[key] = self.redact_identity(value)
            else:
                out.update(self._redact_dict({key: value}))
        return out

    # The walk checks the memo of clean strings itself: most keys and many values are in it,
    # and a dict lookup is much cheaper than a call.

    def _redact_dict(self, value: dict[Any, Any]) -> dict[Any, Any]:
        text, walk, clean = self.redact_text, self.redact, self._clean
        out: dict[Any, Any] = {}
        for key, item in value.items():
            is_str = isinstance(key, str)
            new_key = text(key) if is_str and key not in clean else key
            if isinstance(item, str):
                if is_str and _is_sensitive_key(key):
                    out[new_key] = self._redact_keyed(item)
                else:
                    out[new_key] = item if item in clean else text(item)
            elif isinstance(item, _CONTAINERS):
                out[new_key] = walk(item)
            else:
                out[new_key] = item
        return out

    def _redact_list(self, value: list[Any] | tuple[Any, ...]) -> list[Any]:
        text, walk, clean = self.redact_text, self.redact, self._clean
        return [
            (item if item in clean else text(item))
            if isinstance(item, str)
            else walk(item)
            if isinstance(item, _CONTAINERS)
            else item
            for item in value
        ]

    def _redact_keyed(self, value: str) -> str:
        """A credential's value: masked whole (as its secret's name if it is a registered
        secret) unless it is short or holds markers already (redacted before)."""
        if len(value) < _MIN_KEYED_VALUE_LEN or self._marker_re.search(value):
            return self.redact_text(value)
        name = self._secret_names.get(value)
        return self._mark("password" if name is None else f"secret:{name}", value)


def _check_extra(kind: str, pattern: str) -> str:
    if not _NAME_RE.fullmatch(kind) or kind in _BUILTIN_KINDS:
        raise ValueError(f"extra pattern kind {kind!r}: use a new name of letters, digits, _.-/")
    try:
        compiled = re.compile(f"(?:{pattern})")
    except re.error as exc:
        raise ValueError(f"extra pattern {kind!r} is not a valid regex: {exc}") from None
    if compiled.fullmatch("") is not None:
        raise ValueError(f"extra pattern {kind!r} matches the empty string")
    return pattern
