"""Per-file resource limits of the ingestion: what one hostile file may cost at most.

A file over a limit is quarantined with reason class `over_budget` and the name of the limit
(never a header value). The pixel budget and the frame count are checked from the header,
before anything is decoded; a deflated dataset is inflated in bounded steps, so that a few
hundred kilobytes cannot expand into gigabytes before pydicom sees them.

The time limit is a POSIX interval timer (SIGALRM), set around each file where the file is
processed in a process's main thread (the pool workers, or the main process with one worker)
on a platform that has SIGALRM (Linux, macOS). It fires between Python bytecodes: a single
long call into C (a codec, zlib, a numpy operation) ends before the limit takes effect. On
Windows, or off the main thread, the time limit is not enforced; the size limits still are.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 2**20


@dataclass(frozen=True)
class ResourceLimits:
    """Bounds on what one input file may make the ingestion allocate or spend.

    max_pixel_bytes: Rows x Columns x SamplesPerPixel x NumberOfFrames x BitsAllocated / 8,
        from the header. The default (256 MiB) is eight times a 4096 x 4096 16-bit radiograph.
    max_inflated_bytes: the size a Deflated Explicit VR Little Endian dataset may inflate to
        (its pixels plus the rest of the dataset).
    max_frames: NumberOfFrames; a chest radiograph has one.
    max_seconds: wall-clock time per file, where enforceable (see the module docstring);
        None disables it.
    """

    max_pixel_bytes: int = 256 * MIB
    max_inflated_bytes: int = 272 * MIB
    max_frames: int = 1
    max_seconds: float | None = 120.0

    def __post_init__(self) -> None:
        for name in ("max_pixel_bytes", "max_inflated_bytes", "max_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer (got {value!r})")
        if self.max_inflated_bytes < self.max_pixel_bytes:
            raise ValueError(
                "max_inflated_bytes must be at least max_pixel_bytes "
                f"({self.max_inflated_bytes} < {self.max_pixel_bytes})"
            )
        if self.max_seconds is not None and not (
            isinstance(self.max_seconds, (int, float))
            and not isinstance(self.max_seconds, bool)
            and 0 < self.max_seconds < float("inf")
        ):
            raise ValueError(
                f"max_seconds must be > 0 and finite, or None (got {self.max_seconds!r})"
            )
