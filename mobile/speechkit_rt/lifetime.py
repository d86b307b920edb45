"""The lifetime every bundle runtime shares: its cached sessions, ``close`` and ``with`` support.

A runtime sets ``self.bundle`` (an open :class:`~speechkit_rt.bundle.Bundle`) and
``self._sessions`` (graph name -> onnxruntime session) and defines ``session(graph_name)``.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

_Runtime = TypeVar("_Runtime", bound="BundleLifetime")


class BundleLifetime:
    """Mixin: ``_run`` through the runtime's cached sessions, ``close`` and the context manager."""

    def _run(self, graph_name: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session(graph_name).run(None, feeds)

    def close(self) -> None:
        """Drop the sessions and close the bundle (removing a zip's temporary folder)."""
        self._sessions.clear()
        self.bundle.close()

    def __enter__(self: _Runtime) -> _Runtime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
