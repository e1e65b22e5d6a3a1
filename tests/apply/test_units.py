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
