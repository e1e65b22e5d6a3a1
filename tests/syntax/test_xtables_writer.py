"""The xtables writer: exactly the lines iptables-restore reads, in the order given."""

from __future__ import annotations

from svc2rules.syntax.xtables import (
    DeclareChain,
    DeleteChain,
    DeleteRule,
    DeleteRuleAt,
    FlushChain,
    InsertRule,
    Jump,
    ListRules,
    ReplaceRule,
    Rule,
    Table,
    Transaction,
    builtin_chains,
    comment,
    transaction_of,
    write,
    write_tables,
)


def sample_tables() -> list[Table]:
    filter_table = Table("filter")
    filter_table.chain("OURS-FW")
    filter_table.add("OURS-FW", comment("block it"), "-d 10.0.0.1", "", "-j DROP")
    filter_table.jumps.append(Jump("INPUT", "-j OURS-FW"))
    nat = Table("nat")
    nat.chain("OURS-SVC")
    nat.chain("OURS-SEP")
    nat.add("OURS-SVC", "-j OURS-SEP")
    nat.add("OURS-SEP", "-p tcp -j DNAT --to-destination 10.1.1.1:80")
    nat.jumps += [Jump("PREROUTING", "-j OURS-SVC"), Jump("OUTPUT", "-j OURS-SVC")]
    return [filter_table, nat]


def test_a_whole_payload_declares_appends_then_inserts_jumps() -> None:
    assert write_tables(sample_tables(), header=("made by a test",)) == (
        "# made by a test\n"
        "*filter\n"
        ":OURS-FW - [0:0]\n"
        '-A OURS-FW -m comment --comment "block it" -d 10.0.0.1 -j DROP\n'
        "-I INPUT 1 -j OURS-FW\n"
        "COMMIT\n"
        "*nat\n"
        ":OURS-SVC - [0:0]\n"
        ":OURS-SEP - [0:0]\n"
        "-A OURS-SVC -j OURS-SEP\n"
        "-A OURS-SEP -p tcp -j DNAT --to-destination 10.1.1.1:80\n"
        "-I PREROUTING 1 -j OURS-SVC\n"
        "-I OUTPUT 1 -j OURS-SVC\n"
        "COMMIT\n"
    )


def test_without_jumps_the_built_in_chains_are_not_touched() -> None:
    text = write_tables(sample_tables(), jumps=False)
    assert "-I " not in text and "INPUT" not in text and "PREROUTING" not in text


def test_a_rule_of_empty_parts_is_not_added() -> None:
    table = Table("filter")
    table.add("X", "", "")
    assert table.rules == []


def test_every_command_and_the_chain_less_listing() -> None:
    transaction = Transaction(
        "nat",
        [
            DeclareChain("C"),
            DeclareChain("PREROUTING", "ACCEPT"),
            Rule("C", "-j RETURN"),
            InsertRule("C", "-j ACCEPT", 3),
            ReplaceRule("C", 2, "-j DROP"),
            DeleteRuleAt("C", 4),
            DeleteRule("PREROUTING", "-j C"),
            FlushChain("C"),
            DeleteChain("C"),
            ListRules("C"),
            ListRules(),
        ],
        fetch_table=True,
    )
    assert write([transaction]).splitlines() == [
        "*nat",
        "-S",
        ":C - [0:0]",
        ":PREROUTING ACCEPT [0:0]",
        "-A C -j RETURN",
        "-I C 3 -j ACCEPT",
        "-R C 2 -j DROP",
        "-D C 4",
        "-D PREROUTING -j C",
        "-F C",
        "-X C",
        "-S C",
        "-S",
        "COMMIT",
    ]


def test_several_sections_of_one_table_stay_separate_transactions() -> None:
    text = write(
        [Transaction("nat", [DeclareChain("A")]), Transaction("nat", [InsertRule("OUTPUT", "-j A")])]
    )
    assert text == "*nat\n:A - [0:0]\nCOMMIT\n*nat\n-I OUTPUT 1 -j A\nCOMMIT\n"


def test_nothing_to_write_is_empty() -> None:
    assert write([]) == ""


def test_a_save_declares_built_in_chains_with_their_policy_first() -> None:
    table = Table("filter", chains=["X"], rules=[Rule("INPUT", "-j X")], policies={"INPUT": "DROP"})
    assert write([transaction_of(table)]) == "*filter\n:INPUT DROP [0:0]\n:X - [0:0]\n-A INPUT -j X\nCOMMIT\n"


def test_builtin_chains_adds_and_deletes_a_probe_in_every_built_in_chain() -> None:
    text = write(builtin_chains(["nat"]))
    probe = '-m comment --comment "svc2rules-probe" -j RETURN'
    assert text.splitlines() == [
        "*nat",
        *(
            line
            for chain in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")
            for line in (f"-A {chain} {probe}", f"-D {chain} {probe}")
        ),
        "COMMIT",
    ]
