"""Load stage: read manifest files and turn them into raw Kubernetes objects."""

from svc2rules.load.parse import RawObject, parse_source
from svc2rules.load.reader import Source, read_sources

__all__ = ["RawObject", "Source", "parse_source", "read_sources"]
