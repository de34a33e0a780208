"""Canonical boxes and every dataset format beltcurate reads and writes.

``EXPORTERS`` maps a format name (``coco``, ``voc``, ``yolo``) to its :class:`~exporters.base.Format`.
FiftyOne (:mod:`exporters.fiftyone`) and Label Studio JSON (:mod:`exporters.labelstudio`) have
converters of their own: they are services, not folders.
"""

from __future__ import annotations

from curation.registry import Registry
from exporters.base import Format

EXPORTERS: Registry[Format] = Registry("export format")


def _register_builtin() -> None:
    from exporters import coco, voc, yolo

    for module in (coco, voc, yolo):
        EXPORTERS.register(module.FORMAT.name)(module.FORMAT)


_register_builtin()
