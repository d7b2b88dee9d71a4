"""The profiling of ``bench/vsphere_bench.py --scale --profile``: cProfile in every thread, and what grew per VM."""

from __future__ import annotations

import cProfile
import pstats
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["ThreadProfiles", "grown"]


class ThreadProfiles:
    """cProfile in every thread (the SOAP calls and uploads run in pools): one profiler per thread, timed by its CPU."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []

    def _hook(self, *_: object) -> None:
        profile = cProfile.Profile(time.thread_time)  # CPU of this thread, not wall (waits)
        self.profiles.append(profile)
        profile.enable()  # replaces this hook in the new thread

    def __enter__(self) -> ThreadProfiles:
        threading.setprofile(self._hook)
        self._hook()
        return self

    def __exit__(self, *exc_info: object) -> None:
        threading.setprofile(None)

    def dump(self, path: Path) -> None:
        for profile in self.profiles:
            profile.disable()  # this thread's; another thread's profiler stops counting from here on
        stats = pstats.Stats(*self.profiles)
        stats.dump_stats(path)


def grown(profile_dir: Path, counts: list[int]) -> None:
    """The functions whose own CPU per VM grew most from the smallest to the largest VM count."""
    low, high = min(counts), max(counts)

    def per_vm(count: int) -> dict[tuple[str, int, str], float]:
        files = sorted(profile_dir.glob(f"vms-{count}-*.pstats"))
        stats = pstats.Stats(*map(str, files))
        raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
        return {fn: tt / count / len(files) * 1000 for fn, (_cc, _nc, tt, _ct, _callers) in raw.items()}

    a, b = per_vm(low), per_vm(high)
    total_a, total_b = sum(a.values()), sum(b.values())
    print(f"  profile (own CPU ms per VM, client, every thread): {low} VMs {total_a:.1f}, {high} VMs {total_b:.1f}")
    grown = sorted(b, key=lambda fn: b[fn] - a.get(fn, 0.0), reverse=True)[:8]
    for fn in grown:
        name = f"{Path(fn[0]).name}:{fn[1]}({fn[2]})"
        print(f"    {name:<60} {a.get(fn, 0.0):>7.3f} -> {b[fn]:>7.3f}")
