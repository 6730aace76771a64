"""Reading images for inference: re-exports :mod:`swinlab.data.images`.

The spec-level reading (files, folders, ``ARCHIVE.zip::MEMBER``) lives in the
data layer, next to the one decoder (:func:`swinlab.data.decode.decode_image`)
and the one zip reader (:class:`swinlab.data.sources.ZipSource`); this module
keeps the ``swinlab.inference.images`` import path working.
"""

from __future__ import annotations

from ..data.images import (
    IMAGE_EXTENSIONS,
    ZIP_SEPARATOR,
    SkippedInput,
    close_archives,
    expand_inputs,
    open_image,
    read_spec,
    spec_display_name,
    split_spec,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "ZIP_SEPARATOR",
    "SkippedInput",
    "close_archives",
    "expand_inputs",
    "open_image",
    "read_spec",
    "spec_display_name",
    "split_spec",
]
