"""Reading the xtables tools' refusals: the line they name, and the line to blame."""

from __future__ import annotations

from svc2rules.syntax.xtables import culprit, error_line, lock_busy


def test_the_line_a_refusal_names() -> None:
    assert error_line("iptables-restore: line 12 failed: Bad rule") == 12
    assert (
        error_line("iptables-restore v1.8.9 (nf_tables): Port `x' not valid\nError occurred at line: 7\n")
        == 7
    )
    assert (
        error_line(
            "iptables-restore v1.8.9 (nf_tables): \nline 3: CHAIN_DEL failed (Device or resource busy)"
        )
        == 3
    )
    assert error_line("Another app is currently holding the xtables lock.") is None


def test_a_commit_time_refusal_points_at_the_line_using_the_chain() -> None:
    lines = ["*nat", ":A - [0:0]", "-A A -j RETURN", "-A A -j SVC2R-SEP-X", "COMMIT"]
    assert culprit(lines, 5, "Chain 'SVC2R-SEP-X' does not exist") == 4
    assert culprit(lines, 5, "something else") == 5
    assert culprit(lines, 3, "whatever") == 3


def test_a_busy_lock_is_recognised() -> None:
    assert lock_busy(
        "Another app is currently holding the xtables lock. Perhaps you want to use the -w option?"
    )
    assert not lock_busy("iptables-restore: line 2 failed: No chain/target/match by that name.")
