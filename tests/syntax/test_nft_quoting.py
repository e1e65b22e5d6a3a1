"""Comment quoting: no text can end a quoted nft string early or change the script's structure.

Names are validated by the model layer before they reach a comment; this proves the writer's
quoting is safe on its own, for any text at all, wherever a comment goes (table, set, map,
element, chain, rule, base-chain note).
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from svc2rules.family import IPFamily
from svc2rules.syntax.nftables import COMMENT_MAX, Chain, Hook, Map, Table, Writer, quote_comment
from tests.backends.nftables.helpers import nft_check, root_only

HOSTILE = st.one_of(
    st.text(min_size=1, max_size=300),
    st.sampled_from(
        [
            '"; flush ruleset; "',
            'x" }\n}\nflush ruleset\ntable ip x {\n#',
            "a\nb",
            "\\",
            '\\"',
            "$(reboot)",
            "} ; delete table ip svc2rules ; table ip svc2rules {",
            "\x00",
            "ns1/svc1:p80 -> 10.0.0.1:80",
            "helper for @no-endpoint-services / @no-endpoint-nodeports",
            "é" * 200,
        ]
    ),
)
QUOTED = re.compile(r'"[A-Za-z0-9 ._:/\-\[\]>,;()\'=+@?]*"')


@given(HOSTILE)
def test_a_quoted_comment_is_one_safe_token(text: str) -> None:
    quoted = quote_comment(text)
    assert QUOTED.fullmatch(quoted), quoted
    assert len(quoted) <= COMMENT_MAX + 2


def _script(text: str) -> str:
    table = Table(IPFamily.IPv4, "svc2rules", text)
    dispatch = table.collection(
        Map("m", type="ipv4_addr . inet_proto . inet_service : verdict", comment=text)
    )
    dispatch.elements.append(("172.30.0.1 . tcp . 80", "jump c", text))
    chain = table.chain(Chain("c", text))
    chain.add("accept", text)
    table.chain(Chain("base", text, Hook("filter", "input", 0, note=text)))
    writer = Writer.of(table)
    tx = writer.transaction()
    tx.add_elements("m", [("172.30.0.2 . tcp . 80", "jump c", text)])
    return writer.whole_table(table, (text,)) + tx.text()


def _skeleton(script: str) -> str:
    """The script with every comment's text taken out: quoted strings and `#` lines."""
    return re.sub(r"(?m)^(\t*# (?:priority 0: )?).*$", r"\1", QUOTED.sub('""', script))


@settings(max_examples=300)
@given(HOSTILE)
def test_comments_never_change_the_structure(text: str) -> None:
    assert _skeleton(_script(text)) == _skeleton(_script("benign"))


@root_only[0]
@root_only[1]
@root_only[2]
@root_only[3]
@settings(max_examples=25, deadline=None)
@given(HOSTILE)
def test_nft_parses_any_comment(text: str) -> None:
    result = nft_check(_script(text))
    assert result.returncode == 0, result.stderr
