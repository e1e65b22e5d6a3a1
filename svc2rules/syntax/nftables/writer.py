"""The one writer of nft scripts: a whole table replaced in one transaction, or edits to it.

Every script is meant for `nft -f FILE`: nft reads the whole file before it sends anything,
and sends it as one batch that the kernel commits whole or not at all. So a script can not
be loaded in part, whatever it holds (a whole table, or element edits plus the marker).

The whole-table form (what `compile` prints):

    table ip NAME
    delete table ip NAME
    table ip NAME {
        <sets and maps, then chains; one element per line, each with its comma>
    }

creates the table if missing, deletes it and recreates it whole, touching no other table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from svc2rules.family import IPFamily
from svc2rules.syntax.nftables.objects import Chain, Element, Kind, Map, Set, Table
from svc2rules.syntax.nftables.quoting import quote_comment, script_comment
from svc2rules.syntax.nftables.spelling import spelling


class Writer:
    """Spells the objects of one table: every comment an object carries is written (a caller
    that wants none gives objects without comments)."""

    def __init__(self, family: IPFamily, table: str) -> None:
        self.family = family
        self.table = table
        self.prefix = f"{spelling(family).table_family} {table}"
        # Comments repeat (one per Service port for all its elements): quote each once.
        self._quoted: dict[str, str] = {}

    @classmethod
    def of(cls, table: Table) -> Writer:
        return cls(table.family, table.name)

    def quote(self, text: str) -> str:
        quoted = self._quoted.get(text)
        if quoted is None:
            quoted = self._quoted[text] = quote_comment(text)
        return quoted

    # -- the whole table -----------------------------------------------------------------------

    def whole_table(self, table: Table, preamble: Sequence[str] = ()) -> str:
        """The script that replaces `table` whole; `preamble` lines become `#` comments, followed
        by the writer's own note on what the script does."""
        out = [f"# {script_comment(line)}\n" for line in preamble]
        out.append(
            f"# One transaction: it creates table {self.prefix} if missing, deletes it and\n"
            "# recreates it whole; no other table is touched.\n"
        )
        out.append(f"table {self.prefix}\ndelete table {self.prefix}\ntable {self.prefix} {{\n")
        if table.comment:
            out.append(f"\tcomment {self.quote(table.comment)}\n")
        for collection in table.collections:
            out.append("\n")
            out.append(self.block(collection, elements=True))
        for chain in table.chains:
            out.append("\n")
            out.append(self.block(chain))
        out.append("}\n")
        return "".join(out)

    def block(self, obj: Set | Chain, *, elements: bool = False) -> str:
        """One set, map or chain as written inside `table ... { }`, with or without elements."""
        if isinstance(obj, Chain):
            return self._chain(obj)
        lines = [f"\t{obj.kind} {obj.name} {{\n"]
        lines.extend(f"\t\t{line}\n" for line in self.declaration(obj))
        if elements and obj.elements:
            lines.append("\t\telements = {\n")
            # One element per line, each ending with a comma (nft accepts the trailing one), so
            # adding or removing an element never touches its neighbours' lines.
            lines.append(self._element_lines(obj.elements, isinstance(obj, Map)))
            lines.append("\t\t}\n")
        lines.append("\t}\n")
        return "".join(lines)

    def declaration(self, collection: Set) -> list[str]:
        """A set's or map's declaration statements, one per line."""
        out = [f"typeof {collection.typeof}" if collection.typeof else f"type {collection.type}"]
        if collection.flags:
            out.append(f"flags {', '.join(collection.flags)}")
        if collection.timeout is not None:
            out.append(f"timeout {collection.timeout}s")
        if collection.size is not None:
            out.append(f"size {collection.size}")
        out.extend(collection.extra)
        if collection.comment:
            out.append(f"comment {self.quote(collection.comment)}")
        return out

    def _chain(self, chain: Chain) -> str:
        lines = [f"\tchain {chain.name} {{\n"]
        if chain.comment:
            lines.append(f"\t\tcomment {self.quote(chain.comment)}\n")
        hook = chain.hook
        if hook is not None:
            if hook.note:
                lines.append(f"\t\t# priority {hook.priority}: {script_comment(hook.note)}\n")
            lines.append(
                f"\t\ttype {hook.type} hook {hook.hook} priority {hook.priority}; policy {hook.policy};\n"
            )
        for rule in chain.rules:
            if rule.comment:
                lines.append(f"\t\t{rule.text} comment {self.quote(rule.comment)}\n")
            else:
                lines.append(f"\t\t{rule.text}\n")
        lines.append("\t}\n")
        return "".join(lines)

    def _element_lines(self, elements: list[Element], values: bool) -> str:
        # The hot path of a whole table (100k elements at 10k Services): one comprehension, no
        # call per element (a set's elements have no value, a map's all have one).
        q = {comment: self.quote(comment) for comment in {element[2] for element in elements} if comment}
        if values:
            return "".join(
                [
                    f"\t\t\t{key} comment {q[comment]} : {value},\n"
                    if comment
                    else f"\t\t\t{key} : {value},\n"
                    for key, value, comment in elements
                ]
            )
        return "".join(
            [
                f"\t\t\t{key} comment {q[comment]},\n" if comment else f"\t\t\t{key},\n"
                for key, _, comment in elements
            ]
        )

    def element(self, element: Element) -> str:
        key, value, comment = element
        text = f"{key} comment {self.quote(comment)}" if comment else key
        return text if value is None else f"{text} : {value}"

    def transaction(self) -> Transaction:
        return Transaction(self)


class Transaction:
    """Edits to one table, in the order given (knftables' Transaction): `text()` is one
    `nft -f` script, so the kernel takes every edit or none (see the module docstring)."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self._lines: list[str] = []

    def __len__(self) -> int:
        return len(self._lines)

    def add_table(self) -> None:
        """Create the table if missing (a no-op when it exists)."""
        self._lines.append(f"table {self.writer.prefix}")

    def delete_table(self) -> None:
        self._lines.append(f"delete table {self.writer.prefix}")

    def add(self, collection: Set) -> None:
        """Declare a set or map in one line (`add set ip T NAME { type ...; comment ...; }`)."""
        body = "".join(f"{line}; " for line in self.writer.declaration(collection))
        self._lines.append(f"add {collection.kind} {self.writer.prefix} {collection.name} {{ {body}}}")

    def declare(self, objects: Sequence[Set | Chain]) -> None:
        """Create sets, maps and chains without their elements (give sets and maps first:
        rules name them)."""
        if not objects:
            return
        blocks = "".join(self.writer.block(obj) for obj in objects)
        self._lines.append(f"table {self.writer.prefix} {{\n{blocks}}}")

    def delete(self, kind: Kind, name: str) -> None:
        """Delete a set, map or chain (nothing may refer to it any more: delete a chain before
        the sets its rules name, and the elements leading to a chain before the chain)."""
        self._lines.append(f"delete {kind} {self.writer.prefix} {name}")

    def add_elements(self, collection: str, elements: Iterable[Element]) -> None:
        spelt = ", ".join(self.writer.element(element) for element in elements)
        if spelt:
            self._lines.append(f"add element {self.writer.prefix} {collection} {{ {spelt} }}")

    def delete_elements(self, collection: str, keys: Iterable[str]) -> None:
        spelt = ", ".join(keys)
        if spelt:
            self._lines.append(f"delete element {self.writer.prefix} {collection} {{ {spelt} }}")

    def text(self) -> str:
        return "".join(f"{line}\n" for line in self._lines)
