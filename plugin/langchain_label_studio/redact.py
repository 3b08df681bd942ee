"""Redaction of personal data and secrets, applied to every record before it is stored.

Built-in rules replace matches with typed placeholders: ``<EMAIL>``, ``<PHONE>``,
``<CREDIT_CARD>`` (Luhn-checked), ``<SECRET>`` (API keys, bearer tokens, JWTs, private key
blocks, ``password=...`` and other named secrets) and ``<IBAN>`` (checksum-verified). Extra
rules are ``{"NAME": regex}`` pairs (matches become ``<NAME>``). Every string of the record is
covered, dictionary keys included: messages, the graph state, tool arguments and results,
metadata.

The built-in rules run in time linear in the length of the text, whatever the text: the
redaction runs in the app's process and ``re`` holds the GIL, so a pattern that backtracks
over a long crafted input would stall every request. Their patterns follow three rules:

* a repetition that may run long is possessive (``*+``, ``++``) or bounded, and is never
  followed by something it could also have matched (no backtracking into it);
* a pattern that scans a run of characters (a word, a digit group, a base64 blob) starts
  only where that run starts (a look-behind for "not after a run character"), so a failed
  attempt is not retried from every position inside the same run;
* what a rule cannot decide in the pattern (checksums, digit counts) is decided once per
  candidate in Python.

Extra rules are the user's own regexes and run as given: one that backtracks is as slow here
as anywhere else.
"""

from __future__ import annotations

import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .record import CaptureRecord

#: What a rule's function makes of a candidate match: None keeps it; a string replaces it; a
#: ``(string, end)`` pair replaces only ``match.start():end`` (the candidate ran past what it
#: found) and the search resumes at ``end``.
Verdict = str | tuple[str, int] | None
Replacement = str | Callable[[re.Match[str]], Verdict]
#: A cheap test that is true of every text the rule can replace something in (false: skip it).
Precheck = Callable[[str], bool]


@dataclass(frozen=True)
class Rule:
    """A built-in rule: matches of ``pattern`` become ``replacement`` (a function decides).

    ``glued`` holds ``(offset, pattern)``: the pattern as it applies ``offset`` characters after
    a replacement of the rule, tried there first. A second pass would see the placeholder's
    ``>`` before that point, not the text it replaced, so a look-behind can pass that failed on
    the first (``+1 415-555-0132+61 2 9374 4000`` is two numbers): the first pass looks too.
    """

    name: str
    pattern: re.Pattern[str]
    replacement: Replacement
    precheck: Precheck
    glued: tuple[tuple[int, re.Pattern[str]], ...] = ()


#: A placeholder as written by the rules (``<EMAIL>``, ``<SECRET>``...): a value that starts
#: with one is not redacted again, so redacting twice changes nothing.
_PLACEHOLDER_NAME = r"(?-i:[A-Z][A-Z0-9_]*+>)"
_PLACEHOLDER = rf"<{_PLACEHOLDER_NAME}"
_PLACEHOLDER_RE = re.compile(_PLACEHOLDER)


# --- secrets -------------------------------------------------------------------------------

#: Characters a PEM body may hold: base64, line breaks (also JSON-escaped ``\n``) and the
#: ``Proc-Type: 4,ENCRYPTED`` / ``DEK-Info: AES-128-CBC,...`` headers of legacy encrypted keys.
_PEM_BODY = r"(?:[A-Za-z0-9+/=\s:,\\]|-(?!----))"
#: How far a ``BEGIN`` without its ``END`` is redacted (an RSA 8192-bit key is ~6.5 KB), and
#: then to the end of the word there (what follows starts as it would without the key).
PEM_WINDOW = 12_000
_PEM_LABEL = r"(?:[A-Z0-9]++ ){0,3}PRIVATE KEY(?: BLOCK)?-----"
_PEM = re.compile(
    rf"-----BEGIN {_PEM_LABEL}{_PEM_BODY}{{0,{PEM_WINDOW}}}+(?:[\w+/=]++|-(?!----))*+"
    rf"(?:-----END {_PEM_LABEL})?"
)

_BEARER = re.compile(r"(?i)\bbearer\s++[A-Za-z0-9._~+/=-]{8,}+")

#: A JWT: three base64url segments, the first starting ``eyJ`` (``{"`` encoded). The attempt
#: starts where a base64url run starts; inside the run the first ``eyJ`` at a word boundary is
#: taken once and for all (atomic group), as a later one would end at the same place.
_B64URL = "A-Za-z0-9_-"
_JWT = re.compile(
    rf"(?<![{_B64URL}])(?>((?:[A-Za-z0-9_]*+-)*?)eyJ)[{_B64URL}]{{8,}}+"
    rf"\.[{_B64URL}]{{8,}}+\.[{_B64URL}]{{8,}}+"
)

def _word_start(prefixes: tuple[str, ...]) -> str:
    """``\b(?:prefix|...)`` written to start with a class of their first letters (plain
    letters; the rest may be a pattern): ``re`` skips fast to where one of those stands."""
    letters = "".join(sorted({prefix[0] for prefix in prefixes}))
    rests = "|".join(f"(?<={prefix[0]}){prefix[1:]}" for prefix in prefixes)
    return rf"[{letters}](?<!\w[{letters}])(?:{rests})"


_KEY_PREFIXES = ("sk", "pk", "rk", "xox", "gh", "gl", "hf", "AKIA", "ASIA", "AIza")
_API_KEY_PREFIXES = ("sk", "pk", "rk", "xox[abposr]", "gh[pousr]", "github_pat", "glpat", "hf", "AKIA", "ASIA", "AIza")
_API_KEY = re.compile(rf"{_word_start(_API_KEY_PREFIXES)}[-_]?[A-Za-z0-9_-]{{16,}}+")

#: Names whose value is a secret, as the end of a key (``DB_PASSWORD``, ``X-Api-Key``,
#: ``aws_secret_access_key``, ``clientSecret``): ``total_tokens`` or ``token_type`` are not.
_SECRET_NAMES = ("password", "passwd", "passphrase", "pwd", "secret", "token")
_SECRET_KEY_NAMES = tuple(
    f"{word}{sep}key" for word in ("api", "access", "secret", "private") for sep in ("_", "-", "")
)
#: The same names as a key's end, lower case (the value of such a key is a secret, whatever it holds).
_SECRET_KEY_ENDS = _SECRET_NAMES + tuple(name.lower() for name in _SECRET_KEY_NAMES)


def names_secret(key: str) -> bool:
    """Whether a key (``password``, ``DB_PASSWORD``, ``clientSecret``, ``x-api-key``) names a secret."""
    return key.lower().endswith(_SECRET_KEY_ENDS)


#: The last letters of those names come first: most words end otherwise and fail there.
_ENDS_WITH_SECRET_NAME = (
    "(?<=[dentyDENTY])(?:" + "|".join(f"(?<={name})" for name in _SECRET_NAMES + _SECRET_KEY_NAMES) + ")"
)
#: ``name = value``, ``name: value``, ``"name": "value"``, ``'name' => 'value'``. A quoted
#: value is masked up to its closing quote (at most 4096 characters), a bare one up to a space,
#: quote or placeholder; quotes and separators stay.
_NAMED_SECRET = re.compile(
    rf"(?i)(?<![\w.-])[\w.-]++{_ENDS_WITH_SECRET_NAME}[\"']?\s*+(?:=>|[:=])\s*+"
    rf"(?:\"(?!{_PLACEHOLDER})(?P<dq>[^\"\n]{{4,4096}}+)\""
    rf"|'(?!{_PLACEHOLDER})(?P<sq>[^'\n]{{4,4096}}+)'"
    rf"|[\"']?(?P<bare>(?:[^\s\"',;<]|<(?!{_PLACEHOLDER_NAME})){{6,}}+))"
)

#: An AWS secret access key (40 base64 characters, mixed case, a digit) named nearby.
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9+/=])(?=[A-Za-z+/]{0,39}\d)[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=])")
_AWS_CONTEXT = re.compile(r"(?i)aws|secret")
AWS_CONTEXT_CHARS = 100


def _mask_group(match: re.Match[str], groups: tuple[str, ...], placeholder: str) -> str:
    """The match with the first of ``groups`` that took part replaced by ``placeholder``."""
    for name in groups:
        start = match.start(name)
        if start >= 0:
            text, end = match.string, match.end(name)
            return f"{text[match.start() : start]}{placeholder}{text[end : match.end()]}"
    return match.group(0)


def _named_secret(match: re.Match[str]) -> str:
    return _mask_group(match, ("dq", "sq", "bare"), "<SECRET>")


def _jwt(match: re.Match[str]) -> str:
    return f"{match.group(1)}<SECRET>"


def _aws_secret(match: re.Match[str]) -> str | None:
    key = match.group(0)
    if key.lower() == key or key.upper() == key:  # a key has both cases
        return None
    text, start = match.string, match.start()
    since = max(0, start - AWS_CONTEXT_CHARS)
    # Only what follows the last placeholder is context: a second pass, over text the first
    # shortened, must not find a name that the first pass saw too far away.
    for placeholder in _PLACEHOLDER_RE.finditer(text, max(0, since - 64), start):
        since = max(since, placeholder.end())
    return "<SECRET>" if _AWS_CONTEXT.search(text, since, start) else None


# --- personal data -------------------------------------------------------------------------

#: An e-mail address, local part and domain in any script. The attempt starts where a run of
#: local-part characters starts and takes the run whole; leading dots or quotes stay outside.
_EMAIL_BODY = r"([.%+'-]*+)\w[\w.%+'-]*+@[\w-]++(?:\.[\w-]++)*\.[^\W\d_]{2,}+\b"
_EMAIL = re.compile(rf"(?<![\w.%+'-]){_EMAIL_BODY}")


def _email(match: re.Match[str]) -> str:
    return f"{match.group(1)}<EMAIL>"


#: IBAN length by country (SWIFT IBAN registry).
IBAN_LENGTHS = {
    **dict.fromkeys(["NO"], 15),
    **dict.fromkeys(["BE"], 16),
    **dict.fromkeys(["DK", "FI", "FK", "FO", "GL", "NL", "SD"], 18),
    **dict.fromkeys(["MK", "SI"], 19),
    **dict.fromkeys(["AT", "BA", "EE", "KZ", "LT", "LU", "MN", "XK"], 20),
    **dict.fromkeys(["CH", "HR", "LI", "LV"], 21),
    **dict.fromkeys(["BG", "BH", "CR", "DE", "GB", "GE", "IE", "ME", "RS", "VA"], 22),
    **dict.fromkeys(["AE", "GI", "IL", "IQ", "OM", "SO", "TL"], 23),
    **dict.fromkeys(["AD", "CZ", "ES", "MD", "PK", "RO", "SA", "SE", "SK", "TN", "VG"], 24),
    **dict.fromkeys(["LY", "PT", "ST"], 25),
    **dict.fromkeys(["IS", "TR"], 26),
    **dict.fromkeys(["BI", "DJ", "FR", "GR", "IT", "MC", "MR", "SM"], 27),
    **dict.fromkeys(["AL", "AZ", "BY", "CY", "DO", "GT", "HN", "HU", "LB", "NI", "PL", "SV"], 28),
    **dict.fromkeys(["BR", "EG", "PS", "QA", "UA"], 29),
    **dict.fromkeys(["JO", "KW", "MU", "YE"], 30),
    **dict.fromkeys(["MT", "SC"], 31),
    **dict.fromkeys(["LC"], 32),
    **dict.fromkeys(["RU"], 33),
}
#: A=10 ... Z=35, the letters of an IBAN as its checksum counts them.
_LETTER_VALUES = str.maketrans({chr(ord("A") + n): str(10 + n) for n in range(26)})
_IBAN = re.compile(r"(?i)\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")

#: A card number as cards print it: 13 to 19 digits in one run, in groups of four (4-4-4-4,
#: 4-4-4-1 to 4-4-4-4-3) or as 4-6-5 / 4-6-4 (Amex, Diners), with one separator throughout;
#: five groups of four are taken too, for a card written next to another group of digits.
#: Digits in other groupings are not taken for a card (nor are a UUID's groups).
#: (The pattern starts with its first digit, not a look-behind: ``re`` then skips to digits fast.)
_CARD = re.compile(
    r"\d(?<![\w+]\d)(?:\d{12,18}"
    r"|\d{3}(?P<sep>[ ./_-])(?:\d{4}(?P=sep)\d{4}(?P=sep)(?:\d{4}(?P=sep)\d{1,4}|\d{1,4})|\d{6}(?P=sep)\d{4,5}))\b"
)
_UUID_GROUP_STARTS = (0, 9, 14, 19, 24)
_UUID = re.compile(r"(?<![0-9A-Fa-f-])[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}(?![0-9A-Fa-f-])")

#: Phone numbers: international (``+`` or ``00``, then digit groups, some in parentheses),
#: ``(555) 123-4567``, ``555-123-4567``, national with a trunk ``0`` (``07700 900123``,
#: ``01 44 55 66 77``). Not after ``12:`` or ``12.`` (the seconds of a time, a decimal).
#: Digit groups are taken whole (possessive); only the number of groups is given back.
_SEP = r"[ \t\u00a0\u202f.-]"
_INTL = (
    rf"(?P<intl>(?:\+|00(?=[1-9]\d{{0,2}}[ \t\u00a0\u202f.(-]))(?=(?:[ \t\u00a0\u202f.()-]{{0,2}}\d){{8}})"
    rf"\d++(?:{_SEP}?\(\d{{1,4}}\){_SEP}?\d++|{_SEP}\d++)?"
    rf"(?:{_SEP}?\(\d{{1,4}}\){_SEP}?\d++|{_SEP}\d{{2,}}+){{0,6}})"
)
_PHONE_BODY = (
    rf"(?:{_INTL}"
    rf"|\(\d{{2,4}}\){_SEP}?\d{{3,4}}{_SEP}?\d{{3,4}}"
    rf"|\d{{3}}{_SEP}\d{{3}}{_SEP}\d{{4}}"
    rf"|0\d{{1,4}}{_SEP}\d{{3,4}}{_SEP}?\d{{3,4}}"
    rf"|0[1-9](?:{_SEP}\d\d){{4}})(?!\w)"
)
_PHONE = re.compile(rf"(?<![\w+])(?<!\d[:.]){_PHONE_BODY}")
#: Right after a number, and after the ``:`` or ``.`` that follows one.
_PHONE_GLUED = ((0, re.compile(_PHONE_BODY)), (1, re.compile(rf"(?<=[:.]){_PHONE_BODY}")))
_PHONE_GROUP = re.compile(r"\d+")
_PHONE_PUNCTUATION = "( \t\u00a0\u202f.-"


def _luhn_ok(digits: str) -> bool:
    # On bytes: each digit to double is translated to the digit sum of its double, and the
    # sum of the ASCII codes less 48 each is the Luhn sum (four times faster than int()s).
    raw = (digits if digits.isascii() else str(int(digits))).encode()  # int() reads any script's digits
    kept = raw[-1::-2] + raw[-2::-2].translate(_LUHN_DOUBLED)
    return (sum(kept) - 48 * len(kept)) % 10 == 0


_LUHN_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")


def _in_uuid(match: re.Match[str]) -> bool:
    """Whether the match lies inside a UUID (whose digit groups can look like a number)."""
    text, start, end = match.string, match.start(), match.end()
    if text[start - 1 : start] != "-" and text[end : end + 1] != "-":
        return False
    for offset in _UUID_GROUP_STARTS:
        uuid = _UUID.match(text, start - offset) if start >= offset else None
        if uuid is not None and end <= uuid.end():
            return True
    return False


def _card(match: re.Match[str]) -> Verdict:
    text, sep = match.group(0), match.group("sep")
    digits = text.replace(sep, "") if sep else text
    if len(digits) <= 19 and _luhn_ok(digits):
        return "<CREDIT_CARD>"
    if sep and len(digits) > 16:  # four groups, and other digits written after or before them
        if _luhn_ok(digits[:16]):
            return "<CREDIT_CARD>", match.start() + 19
        if len(digits) == 20 and _luhn_ok(digits[4:]):
            return f"{text[:5]}<CREDIT_CARD>"
    return None


def _iban(match: re.Match[str]) -> Verdict:
    text = match.group(0)
    raw = text.replace(" ", "")
    length = IBAN_LENGTHS.get(raw[:2].upper())
    if length is None:  # a country outside the registry: any IBAN length, written in capitals
        return "<IBAN>" if raw[:2].isupper() and 15 <= len(raw) <= 34 and _iban_ok(raw) else None
    if len(raw) < length or not _iban_ok(raw[:length]):
        return None
    if len(raw) == length:
        return "<IBAN>"
    end = _end_of(text, length)  # a word written after it (a group apart), to be scanned again
    return ("<IBAN>", match.start() + end) if text[end : end + 1] == " " else None


def _iban_ok(raw: str) -> bool:
    number = (raw[4:] + raw[:4]).upper().translate(_LETTER_VALUES)
    return number.isdigit() and int(number) % 97 == 1


def _end_of(text: str, count: int) -> int:
    """The index in ``text`` just past its ``count``-th character that is not a space."""
    seen = 0
    for i, ch in enumerate(text):
        seen += ch != " "
        if seen == count:
            return i + 1
    return len(text)


def _phone(match: re.Match[str]) -> Verdict:
    if _in_uuid(match):
        return None
    if match.start("intl") < 0:  # the national forms have 8 to 13 digits by construction
        return "<PHONE>"
    text = match.group(0)
    total = -2 if text.startswith("00") else 0  # an international prefix, not part of the number
    for group in _PHONE_GROUP.finditer(text):
        if total + len(group.group(0)) > 15:  # too long: the groups before are the number
            if total < 8:
                return None
            cut = group.start()
            while text[cut - 1] in _PHONE_PUNCTUATION:
                cut -= 1
            return "<PHONE>", match.start() + cut
        total += len(group.group(0))
    return "<PHONE>" if total >= 8 else None


# --- rules ---------------------------------------------------------------------------------


def _has_digit(text: str) -> bool:
    """Whether ``text`` holds a decimal digit (``in`` is much faster than a regex search)."""
    if any(digit in text for digit in "0123456789"):
        return True
    return not text.isascii() and _DIGIT.search(text) is not None  # other scripts' digits


_DIGIT = re.compile(r"\d")


def _always(text: str) -> bool:
    return True


def _names_aws_secret(text: str) -> bool:
    lowered = text.lower()
    return "aws" in lowered or "secret" in lowered


#: The built-in rules in the order they are applied: secrets first (a password may hold an
#: ``@``), then e-mails, IBANs before cards and phones (their digits would look like either).
BUILTIN_RULES: list[Rule] = [
    Rule("SECRET", _PEM, "<SECRET>", lambda text: "-----BEGIN" in text),
    Rule("SECRET", _BEARER, "Bearer <SECRET>", lambda text: "bearer" in text.lower()),
    Rule("SECRET", _JWT, _jwt, lambda text: "eyJ" in text),
    Rule("SECRET", _API_KEY, "<SECRET>", lambda text: any(prefix in text for prefix in _KEY_PREFIXES)),
    Rule("SECRET", _NAMED_SECRET, _named_secret, lambda text: "=" in text or ":" in text),
    Rule("SECRET", _AWS_SECRET, _aws_secret, _names_aws_secret),
    Rule("EMAIL", _EMAIL, _email, lambda text: "@" in text, glued=((0, re.compile(_EMAIL_BODY)),)),
    Rule("IBAN", _IBAN, _iban, _has_digit),
    Rule("CREDIT_CARD", _CARD, _card, _has_digit),
    Rule("PHONE", _PHONE, _phone, _has_digit, glued=_PHONE_GLUED),
]

#: The rule whose count a secret named by its key adds to.
_NAMED_RULE = BUILTIN_RULES[4]

_MARK_OR_DIGIT = re.compile(r"[=:@\d]")
_KEY_START = re.compile(_word_start(_KEY_PREFIXES))


def _may_match_builtin(text: str) -> bool:
    """False when no built-in rule can match: each match holds one of these (cheapest first)."""
    return (
        _MARK_OR_DIGIT.search(text) is not None
        or "eyJ" in text
        or "-----BEGIN" in text
        or "bearer" in text.lower()
        or _KEY_START.search(text) is not None
    )


#: Strings at least this long that no rule matches are remembered (:class:`Redactor`).
CLEAN_MIN_CHARS = 32
#: Memory such strings may take, with their entries, in bytes (the oldest are forgotten first).
CLEAN_MAX_BYTES = 4 << 20
#: What remembering a string costs beside the string itself (its entry in the ordered dict).
_ENTRY_BYTES = 150


def _remembered_bytes(text: str) -> int:
    """The memory a remembered clean string takes: the string and its entry (computed, not
    stored beside it: a stored size would itself cost an int object per entry)."""
    return sys.getsizeof(text) + _ENTRY_BYTES


@dataclass
class Redactor:
    """Applies the rules to every string of a record, counting replacements per rule.

    Strings found to hold nothing any rule matches are remembered (in at most
    :data:`CLEAN_MAX_BYTES` of memory), so that a conversation captured again at each turn
    is scanned for its new messages only. Not for use by several threads at once.
    """

    builtin: bool = True
    patterns: Mapping[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rules = list(BUILTIN_RULES) if self.builtin else []
        for name, pattern in self.patterns.items():
            self._rules.append(Rule(name.upper(), re.compile(pattern), f"<{name.upper()}>", _always))
        #: Only the built-in rules are known to match the joined strings of a record wherever
        #: they match one of them (their anchors are word boundaries, which NUL keeps apart).
        self._joinable = not self.patterns
        self._clean: OrderedDict[str, None] = OrderedDict()
        self._clean_bytes = 0
        #: Replacements made so far (all rules): unchanged over a string means it was clean.
        self._replaced = 0

    def _remember_clean(self, text: str) -> None:
        if len(text) < CLEAN_MIN_CHARS or text in self._clean:
            return
        size = _remembered_bytes(text)
        if size > CLEAN_MAX_BYTES // 8:
            return
        self._clean[text] = None
        self._clean_bytes += size
        while self._clean_bytes > CLEAN_MAX_BYTES:
            oldest, _ = self._clean.popitem(last=False)
            self._clean_bytes -= _remembered_bytes(oldest)

    def _count(self, rule: Rule, n: int) -> None:
        self.counts[rule.name] = self.counts.get(rule.name, 0) + n
        self._replaced += n

    def text(self, value: str) -> str:
        """``value`` with every match of every rule replaced."""
        if value in self._clean:
            return value
        replaced = self._replaced
        out = self._apply(value)
        if self._replaced == replaced:
            self._remember_clean(value)
        return out

    def _apply(self, value: str) -> str:
        # A precheck shared by several rules (a digit) is run once: the placeholders the rules
        # write in between add no digit, so a check false of the text stays false after them.
        checked: dict[Precheck, bool] = {}
        for rule in self._rules:
            passed = checked.get(rule.precheck)
            if passed is None:
                passed = checked[rule.precheck] = rule.precheck(value)
            if not passed:
                continue
            if callable(rule.replacement):
                value = self._decide(rule, value)
            else:  # a template: its backslashes escaped
                value, n = rule.pattern.subn(rule.replacement.replace("\\", "\\\\"), value)
                if n:
                    self._count(rule, n)
        return value

    def _decide(self, rule: Rule, text: str) -> str:
        """``re.sub`` where the rule's function rules on each candidate (see :data:`Verdict`)."""
        decide: Callable[[re.Match[str]], Verdict] = rule.replacement  # type: ignore[assignment]
        pieces: list[str] = []
        kept = pos = 0
        match = rule.pattern.search(text)
        while match is not None:
            verdict = decide(match)
            if verdict is None:
                pos = match.end()
                match = rule.pattern.search(text, pos)
                continue
            out, end = (verdict, match.end()) if isinstance(verdict, str) else verdict
            pieces += (text[kept : match.start()], out)
            kept = pos = end
            self._count(rule, 1)
            match = _glued(rule, text, end) or rule.pattern.search(text, pos)
        if not pieces:
            return text
        pieces.append(text[kept:])
        return "".join(pieces)

    def value(self, value: Any) -> Any:
        """A redacted copy of a JSON-like value: strings, and dictionary keys, redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return self._dict(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value

    def _dict(self, value: dict[Any, Any]) -> dict[Any, Any]:
        out = {key: self._item(key, item) for key, item in value.items()}
        if self._joinable and all(type(key) is not str or _plain_key(key) for key in out):
            return out  # most keys: a short word that no built-in rule can match
        renamed: dict[Any, Any] = {}
        for key, item in out.items():
            if isinstance(key, str):
                key = self.text(key)
                if key in renamed:  # two keys became one placeholder: both values are kept
                    key = _free_key(key, renamed)
            renamed[key] = item
        return renamed

    def _item(self, key: Any, item: Any) -> Any:
        """A dictionary's value, redacted; the whole text of one its key names a secret
        (``{"password": "..."}``, as in tool call arguments) is replaced."""
        if self.builtin and type(key) is str and type(item) is str and item and names_secret(key):
            if item != "<SECRET>":
                self._count(_NAMED_RULE, 1)
            return "<SECRET>"
        return self.value(item)

    def record(self, record: CaptureRecord) -> CaptureRecord:
        """Redact a record in place (prompt, answer, every data value) and return it."""
        if not self._rules:
            return record
        if self._joinable and not self._matches_any(record):
            return record
        record.prompt = self.value(record.prompt)
        if record.response is not None:
            record.response = self.text(record.response)
        record.data = self.value(record.data)
        return record

    def _matches_any(self, record: CaptureRecord) -> bool:
        """Whether any rule matches somewhere in the record (most records: no, one pass each).

        The strings are joined with NUL, which no rule's match needs: a rule that matches
        inside one string matches the joined text, so "no match" there means none anywhere.
        They are joined in pieces of about :data:`JOIN_CHARS` (a search holds the GIL: a
        record of many long strings must not stall the app's threads for its whole length).
        Generated ids are left out of the test (they cannot match).
        """
        strings: list[str] = []
        if _collect(record.prompt, strings) | _collect(record.data, strings):
            return True  # a key names a secret: its value is one
        if record.response is not None:
            strings.append(record.response)
        strings = [s for s in strings if s not in self._clean]
        for i, joined in enumerate(_joined(strings)):
            if i:
                time.sleep(0)  # between pieces, the app's threads run
            if _may_match_builtin(joined) and self._any_rule_matches(joined):
                return True
        for text in strings:
            self._remember_clean(text)
        return False

    def _any_rule_matches(self, text: str) -> bool:
        checked: dict[Precheck, bool] = {}
        for rule in self._rules:
            passed = checked.get(rule.precheck)
            if passed is None:
                passed = checked[rule.precheck] = rule.precheck(text)
            if passed and rule.pattern.search(text):
                return True
        return False


#: Characters of a record's strings tested in one search (a longer string is tested alone).
JOIN_CHARS = 64 * 1024


def _joined(strings: list[str]) -> Iterator[str]:
    """The strings joined with NUL, in pieces of about :data:`JOIN_CHARS` characters."""
    piece: list[str] = []
    size = 0
    for text in strings:
        if piece and size + len(text) > JOIN_CHARS:
            yield "\x00".join(piece)
            piece, size = [], 0
        piece.append(text)
        size += len(text) + 1
    if piece:
        yield "\x00".join(piece)


def _glued(rule: Rule, text: str, end: int) -> re.Match[str] | None:
    for offset, pattern in rule.glued:
        if (match := pattern.match(text, end + offset)) is not None:
            return match
    return None


def _free_key(key: str, taken: Mapping[Any, Any]) -> str:
    """``key#2``, ``key#3``...: the first that is not taken."""
    n = 2
    while f"{key}#{n}" in taken:
        n += 1
    return f"{key}#{n}"


#: A request or run id as generated here: no built-in rule changes it (a 32-character word has
#: no boundary for the digit rules, no IBAN of a hex country code is 32 long, and no secret
#: prefix is hex).
_GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def _plain_key(key: str) -> bool:
    """A short key of letters and underscores (``role``, ``user_id``): no built-in rule matches it.

    (It has no digit, mark or dot, and is too short for an API key.)
    """
    return len(key) < 18 and key.isascii() and key.replace("_", "a").isalpha()


#: ``_key_kind`` of short keys seen (the same few keys come in every record), at most 1,024.
_KEY_KINDS: dict[str, tuple[bool, bool]] = {}


def _key_kind(key: str) -> tuple[bool, bool]:
    """Whether a key is plain (:func:`_plain_key`) and whether it names a secret, remembered."""
    kind = (_plain_key(key), names_secret(key))
    if len(key) <= 64:
        if len(_KEY_KINDS) >= 1024:
            _KEY_KINDS.clear()
        _KEY_KINDS[key] = kind
    return kind


def _collect(value: Any, into: list[str]) -> bool:
    """The strings of ``value`` (keys included) into ``into``; True when a key names a secret
    whose value is text."""
    named = False
    if isinstance(value, str):
        if len(value) != 32 or not _GENERATED_ID.fullmatch(value):
            into.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                plain, secret = _KEY_KINDS.get(key) or _key_kind(key)
                if not plain:
                    into.append(key)
                if secret and type(item) is str and item:
                    named = True
            if type(item) is str and len(item) != 32:  # most values: no call needed
                into.append(item)
            else:
                named = _collect(item, into) or named
    elif isinstance(value, list):
        for item in value:
            named = _collect(item, into) or named
    return named
