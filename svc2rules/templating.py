"""The one jinja2 environment. Templates only format; every decision is made in Python."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2


def _template_root() -> jinja2.BaseLoader:
    import jinja2

    # Installed wheels carry templates inside the package; a source checkout keeps them
    # at the top level of the repository.
    packaged = resources.files("svc2rules") / "templates"
    if packaged.is_dir():
        return jinja2.FunctionLoader(lambda name: _read(packaged, name))
    checkout = Path(__file__).resolve().parent.parent / "templates"
    return jinja2.FileSystemLoader(str(checkout))


def _read(root: resources.abc.Traversable, name: str) -> str | None:
    node = root
    for part in name.split("/"):
        node = node / part
    return node.read_text(encoding="utf-8") if node.is_file() else None


@cache
def environment() -> jinja2.Environment:
    # Imported on first use: `apply` builds rules from objects and often renders no template,
    # and jinja2 costs ~40 ms to import.
    import jinja2

    return jinja2.Environment(
        loader=_template_root(),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_template(name: str, **context: object) -> str:
    return environment().get_template(name).render(**context)
