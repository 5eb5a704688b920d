"""Adapters: one small file per source format, each `to_example(row: dict, idx: int, spec) -> Example`.

`ADAPTERS` maps the names used in a DatasetSpec (`adapter: virl39k`) to those functions; a name of the form
"package.module:function" loads a user's own adapter.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from phaserl.data.adapters import deepscaler, generic, geometry3k, mathv360k, mathvision, virl39k
from phaserl.data.schema import Example

Adapter = Callable[..., Example]

ADAPTERS: dict[str, Adapter] = {
    "generic": generic.to_example,
    "deepscaler": deepscaler.to_example,
    "virl39k": virl39k.to_example,
    "geometry3k": geometry3k.to_example,
    "mathv360k": mathv360k.to_example,
    "vermulti": mathv360k.to_example,
    "mathvision": mathvision.to_example,
}


def get_adapter(name: str) -> Adapter:
    """A registered adapter, or "module:function" imported on demand."""
    if name in ADAPTERS:
        return ADAPTERS[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"cannot import adapter {name!r}: {e}") from e
    raise ValueError(f"unknown adapter {name!r}; registered: {sorted(ADAPTERS)} (or 'module:function')")


__all__ = ["ADAPTERS", "Adapter", "get_adapter"]
