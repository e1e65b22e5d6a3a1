"""Arguments as iptables-restore splits them, and comments that cannot escape their quotes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from svc2rules.syntax.xtables import comment, join_args, normalize, parse_restore, split_args

arguments = st.lists(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\0\r\n")), max_size=6)


@given(arguments)
def test_join_args_reads_back_as_the_same_arguments(args: list[str]) -> None:
    assert split_args(join_args(args)) == args


@given(st.text())
def test_a_comment_is_exactly_one_argument_on_one_line_whatever_its_text(text: str) -> None:
    spec = f"{comment(text)} -j RETURN"
    args = split_args(spec)
    assert args[:3] == ["-m", "comment", "--comment"] and args[4:] == ["-j", "RETURN"]
    assert len(args[3]) <= 256
    # Nothing in the text can end the rule's line or start a section of its own.
    [transaction] = parse_restore(f"*filter\n-A X {spec}\nCOMMIT\n")
    assert len(transaction.commands) == 1


def test_comment_keeps_what_kubernetes_names_and_our_wording_contain() -> None:
    text = "ns-1/svc.a:http -> 10.0.0.1:80 [x], (y); a=b 'c'"
    assert comment(text) == f'-m comment --comment "{text}"'
    assert comment('a"b\\c\nd$e') == '-m comment --comment "a?b?c?d?e"'


def test_iptables_restore_quoting_rules() -> None:
    assert split_args('-m comment --comment "a b"  -j  X') == ["-m", "comment", "--comment", "a b", "-j", "X"]
    assert split_args('x"y z"w') == ["xy zw"]  # quotes join parts of one argument
    assert split_args(r'"a\"b" c\d') == ['a"b', r"c\d"]  # backslash escapes inside quotes only
    assert split_args("'a b'") == ["'a", "b'"]  # single quotes are ordinary
    assert split_args('"unterminated x') == ["unterminated x"]


def test_normalize_makes_quoting_and_spacing_canonical() -> None:
    assert normalize('-m comment --comment "word"   -j X') == "-m comment --comment word -j X"
    assert normalize('-m comment --comment "two words" -j X') == '-m comment --comment "two words" -j X'
