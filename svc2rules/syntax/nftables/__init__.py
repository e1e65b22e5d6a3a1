"""nftables syntax: typed objects (a table, its sets, maps and chains), the one writer of nft
scripts, the one reader of nft listings, the per-family spelling table, and an in-memory nft
(`fake`, imported by who needs it). Knows nothing of Services.
"""

from svc2rules.syntax.nftables.objects import (
    Chain,
    Element,
    ElementData,
    Hook,
    Kind,
    Map,
    Rule,
    Set,
    Table,
)
from svc2rules.syntax.nftables.quoting import COMMENT_MAX, is_table_name, quote_comment, quoted_strings
from svc2rules.syntax.nftables.reader import ReadError, normalised, parse_element, read_tables, verdict_chain
from svc2rules.syntax.nftables.spelling import SPELLINGS, Spelling, spelling
from svc2rules.syntax.nftables.writer import Transaction, Writer

__all__ = [
    "COMMENT_MAX",
    "SPELLINGS",
    "Chain",
    "Element",
    "ElementData",
    "Hook",
    "Kind",
    "Map",
    "ReadError",
    "Rule",
    "Set",
    "Spelling",
    "Table",
    "Transaction",
    "Writer",
    "is_table_name",
    "normalised",
    "parse_element",
    "quote_comment",
    "quoted_strings",
    "read_tables",
    "spelling",
    "verdict_chain",
]
