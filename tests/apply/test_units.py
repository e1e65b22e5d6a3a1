"""Pure parts of apply: conntrack deletions, state file."""

from __future__ import annotations

from pathlib import Path

from svc2rules.host.conntrack import stale_deletions
from svc2rules.host.state import StateStore


def udp(endpoints: list[tuple[str, int]], nodeport: int = 0) -> dict[str, object]:
    return {
        "frontends": [["172.30.0.10", 53]],
        "nodeports": [nodeport] if nodeport else [],
        "endpoints": [list(e) for e in endpoints],
    }


def test_stale_conntrack_deletions_follow_kube_proxy() -> None:
    old = {"kube-system/dns:dns": udp([("10.0.0.1", 53), ("10.0.0.2", 53)], 30053), "a/b": udp([])}
    new = {"kube-system/dns:dns": udp([("10.0.0.2", 53)], 30053), "a/b": udp([("10.0.0.9", 53)])}
    argvs = [" ".join(d.argv) for d in stale_deletions(old, new)]
    assert argvs == [
        "conntrack -D -p udp --orig-dst 172.30.0.10 --orig-port-dst 53 --reply-src 10.0.0.1 --reply-port-src 53",
        "conntrack -D -p udp --orig-port-dst 30053 --reply-src 10.0.0.1 --reply-port-src 53",
        "conntrack -D -p udp --orig-dst 172.30.0.10 --orig-port-dst 53",  # a/b went 0 -> 1
    ]
    assert stale_deletions(new, new) == []
    # A Service that disappears: its endpoints' entries go too.
    assert len(stale_deletions(old, {})) == 4  # 2 endpoints x (ClusterIP + NodePort)


def test_state_pending_commit_and_drop(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "iptables")
    assert store.load() is None
    store.write_pending({"generation": "1-a"})
    assert store.load() is None and store.load_pending() == {"format": 3, "generation": "1-a"}
    store.commit_pending()
    assert store.load() == {"format": 3, "generation": "1-a"} and store.load_pending() is None
    store.write_pending({"generation": "2-b"})
    store.drop_pending()
    assert store.load_pending() is None and store.load() is not None
    (tmp_path / "iptables.json").write_text("{torn")
    assert store.load() is None  # unreadable state: unknown, so the kernel is read back
    store.remove()
    assert not list(tmp_path.glob("iptables*"))


def test_a_state_that_fails_a_check_is_unknown_and_says_why(tmp_path: Path) -> None:
    from svc2rules.backends.iptables.model import IptablesState

    store = StateStore(tmp_path, "iptables", schema=IptablesState)
    store.write_pending({"generation": "1-a", "jumps": {"nat": [["PREROUTING", "-j SVC2R-SERVICES"]]}})
    store.commit_pending()
    assert store.load() is not None and store.problem is None
    text = store.path.read_text()
    store.path.write_text(text.replace("PREROUTING", "POSTROUTING"))
    assert store.load() is None and store.problem is not None and "fails its checksum" in store.problem
    store.path.write_text(text[: text.index(',"checksum"')] + "}")
    assert store.load() is None and store.problem is not None and "has no checksum" in store.problem
    store.write_pending({"generation": "1-a", "jumps": "nope"})
    store.commit_pending()
    assert store.load() is None and store.problem is not None and "jumps: a string" in store.problem


def test_a_state_naming_earlier_bulk_records_is_unknown(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "nftables", ("elements",))
    elements = {f"k{i}": "v" * 100 for i in range(100)}
    store.write_pending({"generation": "1-a", "elements": elements})
    store.commit_pending()
    earlier = store.load()
    assert earlier is not None and store.complete(earlier) is not None
    store.write_pending({"generation": "2-b", "elements": {**elements, "k0": "changed"}})
    store.commit_pending()
    later = store.load()
    assert later is not None and len(later["bulk"]["records"]) == 2
    assert (store.complete(later) or {}).get("elements", {}).get("k0") == "changed"
    pointed_back = {**later, "bulk": earlier["bulk"]}
    store.write_pending(pointed_back)
    store.commit_pending()
    state = store.load()
    assert state is not None and store.complete(state) is None
    assert store.problem is not None and "names bulk records of generation 1-a" in store.problem


def test_the_periodic_full_check_is_due_once_the_period_has_passed() -> None:
    from svc2rules.apply.checks import due_note, duration, full_check_due

    assert full_check_due({"checked": 1000.0}, 3600.0, 1000.0 + 3599) is None
    assert full_check_due({"checked": 1000.0}, 3600.0, 1000.0 + 3600) == 3600
    assert full_check_due({"checked": 1000.0}, None, 1e12) is None  # only with --resync
    assert full_check_due({"checked": 1000.0}, 0.0, 1000.0) == 0  # --sync-period 0: every run
    assert full_check_due({}, 3600.0, 1000.0) == float("inf")  # a state of an older version
    assert full_check_due({"checked": "soon"}, 3600.0, 1000.0) == float("inf")
    assert full_check_due({"checked": 5000.0}, 3600.0, 1000.0) == -4000  # clock set back
    assert [duration(s) for s in (0, 45, 3600, 3723, 7200.9)] == ["0s", "45s", "1h", "1h2m3s", "2h"]
    assert due_note(3723, 3600) == (
        "periodic full check (the last one: 1h2m3s ago; --sync-period 1h): "
        "reading our objects back from the kernel and reloading them"
    )
