"""The data sources' progress bars: brainvq.progress (a live bar on a terminal, one line per
long step in a log), under the name the sources import."""

from brainvq.progress import progress

__all__ = ["progress"]
