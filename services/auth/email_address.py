"""Email addresses as the auth service accepts and stores them: one canonical form per mailbox, so
that a lookalike or an invisible character cannot make a second account for the same address.

The length is checked first, then everything else runs on at most MAX_EMAIL characters, and
every step is linear in them (a backtracking pattern on an unchecked 60 KB address once held
the service for 18 s).
"""

from __future__ import annotations

import unicodedata

import idna

from services.common.errors import InvalidArgument

MAX_EMAIL = 254  # RFC 5321: a path of 256 octets, less the angle brackets
MAX_LOCAL_PART_BYTES = 64  # RFC 5321
# Scripts that one label may mix, after UTS #39's "highly restrictive" level: Japanese, Chinese
# and Korean domains are written with Han beside their own scripts and Latin. Any other mix, such
# as Latin with one Cyrillic letter (`ex\u0430mple.com`), is how lookalike domains are made.
_MIXES_ALLOWED = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
# Letters whose Unicode name does not start with their script's name.
_SCRIPT_OF_NAME = {"CJK": "HAN", "IDEOGRAPHIC": "HAN"}
_SHAPE = "email must be an address like name@example.com"


def normalise_email(raw: str) -> str:
    """The canonical form of an address: NFKC, the domain lower-cased in its Unicode form
    (IDNA 2008 with UTS #46 mapping). Raises InvalidArgument naming what is wrong."""
    if len(raw) > MAX_EMAIL:
        raise InvalidArgument(f"email must be at most {MAX_EMAIL} characters")
    address = unicodedata.normalize("NFKC", raw.strip())
    if len(address) > MAX_EMAIL:  # a few characters expand under NFKC
        raise InvalidArgument(f"email must be at most {MAX_EMAIL} characters")
    if any(_invisible_or_space(ch) for ch in address):
        raise InvalidArgument("email must not contain spaces, control or invisible characters")
    local, at, domain = address.rpartition("@")
    if not at or not local or "@" in local:
        raise InvalidArgument(_SHAPE)
    if len(local.encode()) > MAX_LOCAL_PART_BYTES:
        raise InvalidArgument(f"email's part before '@' must be at most {MAX_LOCAL_PART_BYTES} "
                              "bytes")
    domain = _canonical_domain(domain)
    if _mixes_scripts(local) or any(_mixes_scripts(label) for label in domain.split(".")):
        raise InvalidArgument("email mixes alphabets within one word (such as Latin and "
                              "Cyrillic letters that look alike): type it in one alphabet")
    return f"{local}@{domain}"


def _invisible_or_space(ch: str) -> bool:
    """Controls, format characters (zero-width, direction overrides), private-use, unassigned
    and surrogate code points (categories C*), and separators (Z*)."""
    return unicodedata.category(ch)[0] in "CZ"


def _canonical_domain(domain: str) -> str:
    try:
        canonical = idna.decode(idna.encode(domain, uts46=True))
    except UnicodeError:  # idna.IDNAError and its kinds
        raise InvalidArgument("email's domain is not a valid domain name") from None
    labels = canonical.split(".")
    if len(labels) < 2 or not all(labels) or labels[-1].isdigit():
        raise InvalidArgument(_SHAPE)  # a dotted host name, not an IP address
    return canonical


def _script(ch: str) -> str | None:
    """The script of a letter, from its Unicode name ("CYRILLIC SMALL LETTER A"); None for
    digits, marks and punctuation, which go with any script."""
    if not ch.isalpha():
        return None
    if ch.isascii():
        return "LATIN"
    first_word = unicodedata.name(ch, "UNKNOWN").split(" ")[0].split("-")[0]
    return _SCRIPT_OF_NAME.get(first_word, first_word)


def _mixes_scripts(text: str) -> bool:
    scripts = {script for ch in text if (script := _script(ch))}
    return len(scripts) > 1 and not any(scripts <= allowed for allowed in _MIXES_ALLOWED)
