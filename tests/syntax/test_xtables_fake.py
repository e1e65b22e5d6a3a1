"""The in-memory xtables tools answer as iptables-nft 1.8.9 does, for what svc2rules relies on."""

from __future__ import annotations

from svc2rules.family import IPFamily
from svc2rules.host.fake import FakeRunner
from svc2rules.syntax.xtables import Rule, read_listing, read_tables, spelling
from svc2rules.syntax.xtables.fake import XtablesEmulator

V4 = spelling(IPFamily.IPv4)


def host() -> tuple[FakeRunner, XtablesEmulator]:
    runner = FakeRunner(XtablesEmulator)
    return runner, runner.emulator(XtablesEmulator)


def restore(runner: FakeRunner, text: str, *, test: bool = False) -> tuple[int, str, str]:
    result = runner.run(V4.restore_argv(test=test), stdin=text)
    return result.returncode, result.stdout, result.stderr


def test_a_restore_is_saved_back_built_in_chains_first_then_ours_by_name() -> None:
    runner, kernel = host()
    assert restore(runner, "*nat\n:B - [0:0]\n:A - [0:0]\n-A B -j A\n-I PREROUTING 1 -j B\nCOMMIT\n")[0] == 0
    save = runner.run(V4.save_argv("nat")).stdout
    nat = read_tables(save)["nat"]
    assert nat.chains == ["A", "B"] and list(nat.policies) == ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]
    assert nat.rules == [Rule("PREROUTING", "-j B"), Rule("B", "-j A")]
    assert kernel.tables()["nat"] == nat


def test_each_section_commits_on_its_own() -> None:
    runner, kernel = host()
    code, _, stderr = restore(runner, "*filter\n:A - [0:0]\nCOMMIT\n*nat\n:B - [0:0]\n-A B -j NOPE\nCOMMIT\n")
    assert code == 2
    assert "Chain 'NOPE' does not exist" in stderr and "Error occurred at line: 7" in stderr
    assert kernel.tables()["filter"].chains == ["A"] and "nat" not in kernel.tables()


def test_test_mode_parses_and_resolves_no_reference() -> None:
    runner, kernel = host()
    assert restore(runner, "*nat\n-A NOPE -j NOWHERE\nCOMMIT\n", test=True)[0] == 0
    assert kernel.tables() == {}
    kernel.refuse(":99999", "Port `99999' not valid")
    code, _, stderr = restore(
        runner, "*nat\n:Q - [0:0]\n-A Q -j DNAT --to-destination 1.2.3.4:99999\nCOMMIT\n", test=True
    )
    assert code == 2 and "Port `99999' not valid\nError occurred at line: 3" in stderr


def test_refusals_of_the_kernel_name_their_line() -> None:
    runner, _ = host()
    restore(runner, "*filter\n:X - [0:0]\n:Y - [0:0]\n-A Y -j X\n-A X -j RETURN\nCOMMIT\n")
    cases = {
        "-A NOPE -j RETURN": "line 2 failed: No chain/target/match by that name.",
        "-D X 5": "line 2 failed: No chain/target/match by that name.",
        "-R X 2 -j DROP": "line 2 failed: No chain/target/match by that name.",
        "-I X 3 -j DROP": "line 2 failed: Index of insertion too big.",
        "-D X -j DROP": "line 2 failed: Bad rule (does a matching rule exist in that chain?).",
        "-X X": "line 2: CHAIN_DEL failed (Device or resource busy): chain X",
    }
    for line, message in cases.items():
        code, _, stderr = restore(runner, f"*filter\n{line}\nCOMMIT\n")
        assert code != 0 and message in stderr, (line, stderr)
    # Emptied and no longer jumped to within the same section: -X goes through.
    assert restore(runner, "*filter\n:X - [0:0]\n-D Y -j X\n-X X\nCOMMIT\n")[0] == 0


def test_positional_edits_and_deletion_by_arguments() -> None:
    runner, kernel = host()
    rules = ("-s 10.0.0.1 -j RETURN", '-m comment --comment "x y" -j DROP', "-s 10.0.0.3 -j RETURN")
    assert (
        restore(runner, "*filter\n:C - [0:0]\n" + "".join(f"-A C {r}\n" for r in rules) + "COMMIT\n")[0] == 0
    )
    edits = '*filter\n-R C 3 -j ACCEPT\n-D C 1\n-I C 1 -j REJECT\n-D C -m comment --comment "x y"   -j DROP\nCOMMIT\n'
    assert restore(runner, edits)[0] == 0
    assert [r.spec for r in kernel.tables()["filter"].rules] == ["-j REJECT", "-j ACCEPT"]


def test_a_section_opening_with_a_listing_cannot_create_built_in_chains() -> None:
    runner, _ = host()
    code, stdout, stderr = restore(runner, "*filter\n-S\n:X - [0:0]\n-I INPUT 1 -j X\nCOMMIT\n")
    assert code == 4 and "RULE_INSERT failed (No such file or directory): rule in chain INPUT" in stderr
    assert stdout == "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n"
    probe = '-m comment --comment "p" -j RETURN'
    restore(runner, f"*filter\n-A INPUT {probe}\n-D INPUT {probe}\nCOMMIT\n")
    assert restore(runner, "*filter\n-S\n:X - [0:0]\n-I INPUT 1 -j X\nCOMMIT\n")[0] == 0


def test_a_restore_without_noflush_replaces_the_table() -> None:
    runner, kernel = host()
    restore(runner, "*filter\n:OLD - [0:0]\nCOMMIT\n")
    assert runner.run(["iptables-restore"], stdin="*filter\n:NEW - [0:0]\nCOMMIT\n").ok
    assert kernel.tables()["filter"].chains == ["NEW"]


def test_listings_and_single_commands() -> None:
    runner, kernel = host()
    restore(runner, '*nat\n:X - [0:0]\n-A X -j RETURN\n-A OUTPUT -m comment --comment "to x" -j X\nCOMMIT\n')
    listed = runner.run(V4.list_argv("nat", "X"))
    assert listed.ok and read_listing(listed.stdout).rules == [Rule("X", "-j RETURN")]
    missing = runner.run(V4.list_argv("nat", "NOPE"))
    assert missing.returncode == 1 and "NOPE" in missing.stderr
    deleted = runner.run(
        ["iptables", "-t", "nat", "-D", "OUTPUT", "-m", "comment", "--comment", "to x", "-j", "X"]
    )
    assert deleted.ok and kernel.tables()["nat"].rules == [Rule("X", "-j RETURN")]
    again = runner.run(["iptables", "-t", "nat", "-D", "OUTPUT", "-j", "X"])
    assert again.returncode == 1 and "Bad rule" in again.stderr
    assert runner.run(["iptables", "-t", "nat", "-F", "X"]).ok and kernel.tables()["nat"].rules == []


def test_a_listing_inside_a_restore_prints_what_the_section_has_so_far() -> None:
    runner, _ = host()
    _, stdout, _ = restore(runner, "*nat\n:X - [0:0]\n-A X -j RETURN\n-S X\nCOMMIT\n")
    assert stdout == "-N X\n-A X -j RETURN\n"


def test_every_family_has_its_own_kernel() -> None:
    runner, kernel = host()
    assert runner.run(spelling(IPFamily.IPv6).restore_argv(), stdin="*filter\n:SIX - [0:0]\nCOMMIT\n").ok
    assert kernel.tables(IPFamily.IPv6)["filter"].chains == ["SIX"] and kernel.tables() == {}
