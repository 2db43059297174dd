"""Keep freed CPU memory in the process, so that the next pass reuses warm pages (glibc malloc).

PyTorch's CPU tensors come from malloc. glibc serves a block above its mmap threshold (128 KB
at first, raised as such blocks are freed, never past 32 MB) with a fresh mmap that goes back to
the kernel at free, and it gives the top of its heap back past a trim threshold. Inference
allocates and frees the same large activations at every pass, so every pass faults their pages
in again and the kernel zeroes each one first: a SoundStorm pass over a dialogue's batch ([6,
320] frames, 2 threads) took 3,000-74,000 minor page faults (up to 300 MB zeroed) as glibc's
thresholds moved, 54,000 in the median round of benchmarks/allocator.py. With both thresholds
fixed high it took none and ran 1.33x faster, and the dialogue 1.16x; a training step's 10,000
faults went too, with no measurable gain in its time (docs/benchmarks.md). The price is a
resident size that stays at its peak, which such a process reaches at every pass anyway.

The `soundstorm` command calls keep_freed_memory() once at its start; a program that imports
soundstorm as a library decides for itself (the setting is process-wide). Setting the
environment variables MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ (glibc reads them at
start-up) or SOUNDSTORM_MALLOC=default leaves glibc as it is.
"""

from __future__ import annotations

import ctypes
import os

# mallopt's parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2: 32 MB on 64-bit systems. Blocks
# larger than that (a 60 s clip's widest activations) are still mapped and unmapped each time.
MMAP_THRESHOLD = 32 * 1024 * 1024
# Give the heap's top back to the kernel only past 1 GiB free (mallopt takes a C int).
TRIM_THRESHOLD = 1024 * 1024 * 1024
OPT_OUT = "SOUNDSTORM_MALLOC"


def glibc_version() -> str | None:
    """'2.36' where this process runs on glibc, else None (musl, macOS, Windows)."""
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return None
    return version if name == "glibc" else None


def keep_freed_memory() -> bool:
    """Fix glibc's mmap threshold at 32 MB and its trim threshold at 1 GiB for this process.
    Returns whether both were set: False off glibc, where the user set glibc's own variables or
    SOUNDSTORM_MALLOC=default, or where mallopt refused."""
    if os.environ.get(OPT_OUT) == "default" or glibc_version() is None:
        return False
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return False  # the user's own tuning, read by glibc at start-up, stands
    mallopt = ctypes.CDLL(None).mallopt  # the process's C library: the malloc PyTorch calls
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; the mmap threshold first, as glibc's own variables do.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
