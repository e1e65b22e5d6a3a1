"""Arguments of an xtables rule: how iptables-restore splits a line into them, how to join
them back, and comments that cannot break out of their quotes.

iptables-restore's tokenizer (add_param_to_argv): words are separated by blanks; a double
quote opens or closes a quoted part, inside which a backslash escapes the next character;
outside quotes a backslash is an ordinary character. Single quotes are ordinary characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

COMMENT_MAX = 256
# Everything a validated Kubernetes name, an address or our own wording can contain.
_COMMENT_UNSAFE = re.compile(r"[^A-Za-z0-9 ._:/\-\[\]>,;()'=]")
_NEEDS_QUOTES = re.compile(r'[\s"\\]')
# One argument: unquoted runs and quoted parts (backslash escapes inside), up to a blank.
_WORD = re.compile(r'(?:[^\s"]+|"(?:[^"\\]|\\.)*(?:"|\\?$))+')


def comment(text: str) -> str:
    """`-m comment` arguments; anything outside a conservative alphabet is replaced, so a
    comment can never end its quotes or start a new rule."""
    safe = _COMMENT_UNSAFE.sub("?", text)[:COMMENT_MAX]
    return f'-m comment --comment "{safe}"'


def split_args(spec: str) -> list[str]:
    """The arguments iptables-restore reads from `spec` (an unterminated quote runs to the end)."""
    if '"' not in spec:
        return spec.split()
    return [_unquote(word) if '"' in word else word for word in _WORD.findall(spec)]


def _unquote(word: str) -> str:
    if word[0] == word[-1] == '"' and len(word) > 1 and '"' not in word[1:-1] and "\\" not in word:
        return word[1:-1]  # the common case: one quoted part, nothing escaped
    out: list[str] = []
    quoted = escaped = False
    for char in word:
        if escaped:
            out.append(char)
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        else:
            out.append(char)
    return "".join(out)


def quote(arg: str) -> str:
    """One argument as iptables-restore reads it back unchanged."""
    if arg and not _NEEDS_QUOTES.search(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def join_args(args: Iterable[str]) -> str:
    return " ".join(quote(arg) for arg in args)


def normalize(spec: str) -> str:
    """`spec` with its quoting and spacing made canonical: two specs iptables reads as the same
    arguments normalize to the same text."""
    return join_args(split_args(spec))
