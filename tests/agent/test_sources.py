"""Where `run` reads from: kubectl's watch-event stream (split however it arrives, every event
type), and watched folders (a changed file read again alone, a removed one gone)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from svc2rules.agent.invalid import left_out
from svc2rules.agent.sources import EventParser, EventStream, FolderInput
from svc2rules.errors import Diagnostic
from tests.conftest import service, to_yaml


def kubectl_events(*events: tuple[str, dict[str, Any]]) -> bytes:
    """As `kubectl get ... --watch --output-watch-events -o json` prints them: each event an
    indented JSON object on its own lines."""
    return b"".join(json.dumps({"type": t, "object": o}, indent=4).encode() + b"\n" for t, o in events)


def test_the_parser_splits_events_however_the_bytes_arrive() -> None:
    text = kubectl_events(
        ("ADDED", service("a", "ns")), ("MODIFIED", service("a", "ns", clusterIP="172.30.0.9"))
    )
    text += "é".encode()[:1]  # a chunk may also end inside a character
    for size in (1, 7, 4096):
        parser = EventParser()
        values = []
        for start in range(0, len(text) - 1, size):
            values += parser.feed(text[start : min(start + size, len(text) - 1)])
        assert [v["type"] for v in values] == ["ADDED", "MODIFIED"]
        assert values[1]["object"]["spec"]["clusterIP"] == "172.30.0.9"


def test_events_add_modify_and_delete_objects() -> None:
    stream = EventStream("svc.events", 3)
    changes, notes, _ = stream.apply({"type": "ADDED", "object": service("a", "ns")})
    ((name, change),) = changes.items()
    assert name == "svc.events: Service ns/a" and notes == []
    assert change is not None and json.loads(change[1].data)["metadata"]["name"] == "a"
    changes, _, _ = stream.apply({"type": "DELETED", "object": service("a", "ns")})
    assert changes == {"svc.events: Service ns/a": None}


def test_bookmarks_and_deletions_of_objects_never_seen_change_nothing() -> None:
    stream = EventStream("svc.events", 0)
    bookmark = {"kind": "Service", "apiVersion": "v1", "metadata": {"resourceVersion": "12345"}}
    assert stream.apply({"type": "BOOKMARK", "object": bookmark}) == ({}, [], None)
    assert stream.apply({"type": "DELETED", "object": service("never", "ns")}) == ({}, [], None)


def test_an_error_event_is_said_and_changes_nothing() -> None:
    stream = EventStream("svc.events", 0)
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": "too old resource version",
    }
    changes, notes, _ = stream.apply({"type": "ERROR", "object": status})
    assert changes == {} and notes == ["svc.events: the watch reported an error: too old resource version"]


def test_a_restarted_stream_replaces_its_objects_once_its_listing_settles() -> None:
    stream = EventStream("svc.events", 0)
    stream.apply({"type": "ADDED", "object": service("a", "ns")})
    stream.apply({"type": "ADDED", "object": service("b", "ns")})
    stream.restarted()
    assert stream.apply({"type": "ADDED", "object": service("b", "ns")})[0] == {}
    changes = stream.settle()
    assert changes == {"svc.events: Service ns/a": None}  # b unchanged, a gone
    assert stream.settle() == {}


def test_a_node_object_goes_to_health_not_to_the_input() -> None:
    stream = EventStream("nodes.events", 0)
    node = {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "node1"}}
    assert stream.apply({"type": "MODIFIED", "object": node}) == ({}, [], node)


def test_a_changed_file_is_read_alone_and_a_removed_one_is_gone(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(to_yaml(service("a", "ns")))
    (tmp_path / "b.yaml").write_text(to_yaml(service("b", "ns")))
    (tmp_path / "notes.txt").write_text("not a manifest")
    folder = FolderInput([str(tmp_path)], recursive=False, max_bytes=1 << 20)
    assert sorted(folder.read_all()) == [str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]
    (tmp_path / "a.yaml").write_text(to_yaml(service("a", "ns", clusterIP="172.30.0.7")))
    changes, problems = folder.changed([str(tmp_path / "a.yaml"), str(tmp_path / "notes.txt")])
    assert list(changes) == [str(tmp_path / "a.yaml")] and problems == []
    (tmp_path / "b.yaml").unlink()
    changes, _ = folder.changed([str(tmp_path / "b.yaml")])
    assert changes == {str(tmp_path / "b.yaml"): None}


def test_a_new_folder_under_a_recursive_watch_brings_its_files(tmp_path: Path) -> None:
    folder = FolderInput([str(tmp_path)], recursive=True, max_bytes=1 << 20)
    folder.read_all()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.json").write_text(json.dumps(service("c", "ns")))
    changes, _ = folder.changed([str(tmp_path / "sub")])
    assert list(changes) == [str(tmp_path / "sub" / "c.json")]


def test_an_object_left_out_is_said_once_with_its_first_problem() -> None:
    problems = [
        Diagnostic("f.yaml", "Invalid value: 0", "Service", "ns/a", "spec.ports[0].port"),
        Diagnostic("f.yaml", "Required value", "Service", "ns/a", "spec.ports[0].name"),
        Diagnostic("g.yaml", "invalid YAML: mapping values are not allowed here"),
    ]
    assert left_out(problems) == [
        "f.yaml: Service ns/a: spec.ports[0].port: Invalid value: 0 (and 1 more problem); the object is left out",
        "g.yaml: invalid YAML: mapping values are not allowed here; the source is left out",
    ]
