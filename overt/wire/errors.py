"""The errors of ``overt.wire``: bytes that are not what their format says.

Exceptions::

    FormatError            every error raised by overt.wire's parsers
     ├── BodyFormatError   a batch body that is corrupt, truncated, over a
     │    │                limit or of an unknown format version
     │    └── BodyLimitError  (body) over one of the body's limits
     ├── HeaderFormatError a batch header that is not a valid format-1 header
     ├── ImageError        (frames) an image blob that is not a well-formed
     │                     image of the formats a batch may hold
     ├── FrameError        (frames) an image or a frame whose size is not what
     │                     its record says
     └── ControlFormatError  (control) a control API line that is not a
                           valid request or answer
"""

from __future__ import annotations


class FormatError(Exception):
    """Base class of every error raised by ``overt.wire``'s parsers."""


class BodyFormatError(FormatError):
    """A batch body cannot be decoded: corrupt, truncated or an unknown version."""


class BodyLimitError(BodyFormatError):
    """A body over one of the limits of ``overt.wire.body``; ``limit`` names it."""

    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(f"over the {limit} limit: {detail}")
        self.limit = limit


class HeaderFormatError(FormatError):
    """A batch header that is not valid JSON of a known header format."""


class ImageError(FormatError):
    """An image blob that is not a well-formed WebP, JPEG or PNG image (or does not decode)."""


class FrameError(FormatError):
    """An image or a frame whose size does not match what its record says."""
