"""Modules imported on their first use. The method modules (baselines, features, losses) declare
their names as they are imported, and a config's checks read those names: with torch imported
lazily there, a mistyped name is refused before torch (a second to load) is."""

from __future__ import annotations

import importlib
import sys
import types


class LazyModule(types.ModuleType):
    def __getattr__(self, attr: str):
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)  # later reads find the module's names directly
        return getattr(module, attr)


def lazy(name: str) -> types.ModuleType:
    """Module `name`, imported on the first read of one of its attributes (now if it already is)."""
    return sys.modules.get(name) or LazyModule(name)
