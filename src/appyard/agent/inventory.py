"""What the agent's machine has: CPU cores, memory, the disk of its work folder, its GPUs.

The agent reports it with every hello and, when it changed, with its next poll (``loop.py``):
no request of its own. A placement engine on the server reads it, so the figures are what a
session placed here can use: ``cpus`` is the CPUs this process may run on (its affinity mask,
as ``os.cpu_count()`` on a machine that does not pin it), memory is ``/proc/meminfo``'s, the
disk is that of the file system holding the work folder.

GPUs are read through NVML (``nvidia-ml-py``, the ``gpu`` extra: ``pip install
'appyard[gpu]'``), imported on first use and started once per process; a missing library, no
driver, or an NVML error means no GPUs, said once in the log with the reason. A machine
without a GPU never needs the library.

The seam is ``read_gpus()``. For tests (no GPU here), ``APPYARD_AGENT_INVENTORY_FILE`` names a
JSON file whose ``gpus`` list is reported instead of NVML's, and whose optional ``cpus``,
``memory_mb``, ``memory_available_mb``, ``disk_free_mb`` and ``disk_total_mb`` replace the
machine's figures. It is test-only: a real agent must not be given one.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import Field, ValidationError, model_validator

from appyard.errors import ConfigurationError
from appyard.schemas.agents import (
    MAX_CPUS,
    MAX_GPU_NAME,
    MAX_GPUS,
    AgentInventory,
    GpuReport,
    MegaBytes,
)
from appyard.schemas.common import Wire

log = logging.getLogger("appyard.agent")

#: test-only: a JSON file whose GPUs (and figures) the agent reports instead of its machine's
INVENTORY_FILE_ENV = "APPYARD_AGENT_INVENTORY_FILE"
#: how often NVML is asked again for the GPUs (a GPU that fell off the bus, a reconfiguration)
GPU_REREAD_S = 60.0
#: memory available and disk free are sent again when they moved by this share of the total
#: (at least ``MIN_STEP_MB``): not on every poll for a few pages more or less
CHANGE_SHARE = 0.05
MIN_STEP_MB = 64

_MB = 1024 * 1024


class InventoryFile(Wire):
    """The test-only inventory file: GPUs to report, and figures to report instead."""

    gpus: list[GpuReport] = Field(default_factory=list, max_length=MAX_GPUS)
    cpus: int | None = Field(default=None, ge=1, le=MAX_CPUS)
    memory_mb: MegaBytes | None = None
    memory_available_mb: MegaBytes | None = None
    disk_free_mb: MegaBytes | None = None
    disk_total_mb: MegaBytes | None = None

    @model_validator(mode="after")
    def _distinct(self) -> InventoryFile:
        for name in ("index", "uuid"):
            values = [getattr(g, name) for g in self.gpus]
            if len(set(values)) != len(values):
                raise ValueError(f"two GPUs have the same {name}; each must have its own")
        return self


# --- the seam: GPUs ---------------------------------------------------------------------------
def read_gpus() -> list[GpuReport]:
    """This machine's GPUs: the test-only file's when ``APPYARD_AGENT_INVENTORY_FILE`` is set,
    else NVML's; none where NVML cannot tell (no library, no driver, an error: logged once)."""
    spec = inventory_file()
    if spec is not None:
        return list(spec.gpus)
    return nvml_gpus()


def inventory_file() -> InventoryFile | None:
    """The test-only inventory file, if one is set (read again only when it changed).

    Raises ConfigurationError when it cannot be read or holds what an agent cannot report.
    """
    global _file_cache
    name = os.environ.get(INVENTORY_FILE_ENV)
    if not name:
        return None
    path = Path(name)
    try:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        with _lock:
            if _file_cache is not None and _file_cache[0] == key:
                return _file_cache[1]
        spec = InventoryFile.model_validate_json(path.read_bytes())
    except OSError as e:
        raise ConfigurationError(
            f"{INVENTORY_FILE_ENV}={name}: cannot read it ({e.strerror or e}); give an existing "
            "JSON file, or unset it (it is for tests only: a real agent reads its machine)"
        ) from None
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "the file"
        raise ConfigurationError(
            f"{INVENTORY_FILE_ENV}={name}: {where}: {first['msg']} (expected "
            '{"gpus": [{"index": 0, "uuid": "GPU-...", "name": "...", "memory_mb": 81920}]})'
        ) from None
    with _lock:
        _file_cache = (key, spec)
    return spec


_lock = threading.Lock()
_file_cache: tuple[tuple[str, int, int], InventoryFile] | None = None
#: NVML once started (None: not tried yet); ``_nvml_off`` says why there is none
_nvml: ModuleType | None = None
_nvml_off: str | None = None
#: reasons already logged (each once per process)
_said: set[str] = set()


def _say_once(reason: str) -> None:
    if reason not in _said:
        _said.add(reason)
        log.info("%s", reason)


def _start_nvml() -> ModuleType | None:
    """NVML, started once per process; None (with the reason logged once) where it cannot."""
    global _nvml, _nvml_off
    if _nvml is not None or _nvml_off is not None:
        return _nvml
    try:
        import pynvml  # the ``gpu`` extra; absent on most machines without a GPU
    except ImportError:
        _nvml_off = (
            "no GPUs reported: nvidia-ml-py is not installed "
            "(pip install 'appyard[gpu]' on a machine with NVIDIA GPUs)"
        )
    else:
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            _nvml_off = f"no GPUs reported: NVML could not start ({e}): no NVIDIA driver here?"
        except OSError as e:  # a broken library file
            _nvml_off = f"no GPUs reported: the NVML library could not be loaded ({e})"
        else:
            _nvml = pynvml
    if _nvml_off is not None:
        _say_once(_nvml_off)
    return _nvml


def _text(value: Any) -> str:
    """An NVML string (bytes in older bindings) as printable text the server accepts."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return re.sub(r"[\x00-\x1f\x7f]", "", str(value)).strip()


def nvml_gpus() -> list[GpuReport]:
    """The GPUs NVML sees (index, UUID, model name, total memory); [] where it cannot tell."""
    with _lock:
        nv = _start_nvml()
        if nv is None:
            return []
        try:
            out = []
            for i in range(min(nv.nvmlDeviceGetCount(), MAX_GPUS)):
                h = nv.nvmlDeviceGetHandleByIndex(i)
                out.append(
                    GpuReport(
                        index=i,
                        uuid=_text(nv.nvmlDeviceGetUUID(h)),
                        name=_text(nv.nvmlDeviceGetName(h))[:MAX_GPU_NAME] or "unknown GPU",
                        memory_mb=int(nv.nvmlDeviceGetMemoryInfo(h).total) // _MB,
                    )
                )
            return out
        except nv.NVMLError as e:
            _say_once(f"no GPUs reported: NVML failed to list them ({e})")
            return []
        except ValidationError as e:
            _say_once(f"no GPUs reported: NVML gave a GPU the server would refuse ({e})")
            return []


# --- the rest of the machine ------------------------------------------------------------------
def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask), else the machine's."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_CPUS))


def memory_mb() -> tuple[int, int]:
    """(total, available) memory in MB, from ``/proc/meminfo`` (else ``sysconf``)."""
    try:
        fields = {}
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                name, _, rest = line.partition(b":")
                if name in (b"MemTotal", b"MemAvailable"):
                    fields[name] = int(rest.split()[0]) // 1024  # kB
        total = fields[b"MemTotal"]
        return total, min(total, fields.get(b"MemAvailable", total))
    except (OSError, KeyError, ValueError, IndexError):
        page = os.sysconf("SC_PAGE_SIZE")
        total = os.sysconf("SC_PHYS_PAGES") * page // _MB
        return total, min(total, os.sysconf("SC_AVPHYS_PAGES") * page // _MB)


def disk_mb(folder: Path) -> tuple[int, int]:
    """(free, total) MB of the file system holding ``folder`` (or its nearest existing parent);
    free is what an unprivileged process may still write."""
    path = folder.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize // _MB
    return min(total, st.f_bavail * st.f_frsize // _MB), total


def _step(total: int) -> int:
    return max(MIN_STEP_MB, int(total * CHANGE_SHARE))


def differs(new: AgentInventory, old: AgentInventory | None) -> bool:
    """Whether ``new`` is worth sending after ``old``: anything but memory available and disk
    free changed, or one of those moved by ``CHANGE_SHARE`` of its total."""
    if old is None:
        return True
    fixed = ("cpus", "memory_mb", "disk_total_mb", "gpus", "labels")
    if any(getattr(new, f) != getattr(old, f) for f in fixed):
        return True
    return abs(new.memory_available_mb - old.memory_available_mb) >= _step(new.memory_mb) or abs(
        new.disk_free_mb - old.disk_free_mb
    ) >= _step(new.disk_total_mb)


class InventoryReader:
    """Reads the machine for the agent's hello and polls; remembers what the server has.

    ``for_hello()`` reads everything afresh (GPUs included). ``for_poll()`` reads it again (NVML
    at most every ``gpu_every_s``) and gives it only if it ``differs`` from what the server
    answered last; ``sent()`` records that the server took it.
    """

    def __init__(
        self, folder: Path, labels: dict[str, str], gpu_every_s: float = GPU_REREAD_S
    ) -> None:
        self.folder = folder
        self.labels = dict(labels)
        self.gpu_every_s = gpu_every_s
        self._gpus: list[GpuReport] = []
        self._gpus_at: float | None = None
        self._acked: AgentInventory | None = None

    def read(self, *, fresh_gpus: bool = False) -> AgentInventory:
        """The machine now. Raises ConfigurationError for a broken test-only file."""
        spec = inventory_file()
        now = time.monotonic()
        stale = self._gpus_at is None or now - self._gpus_at >= self.gpu_every_s
        if spec is not None:
            gpus = list(spec.gpus)
        elif fresh_gpus or stale:
            gpus = nvml_gpus()
        else:
            gpus = self._gpus
        if spec is not None or fresh_gpus or stale:
            if gpus != self._gpus or self._gpus_at is None:
                self._log_gpus(gpus)
            self._gpus, self._gpus_at = gpus, now
        total, available = memory_mb()
        free, disk_total = disk_mb(self.folder)
        figures: dict[str, int] = {
            "cpus": cpu_count(),
            "memory_mb": total,
            "memory_available_mb": available,
            "disk_free_mb": free,
            "disk_total_mb": disk_total,
        }
        if spec is not None:
            for name in figures:
                given = getattr(spec, name)
                if given is not None:
                    figures[name] = given
        # a file may give a total below the machine's figure of what is free
        figures["memory_available_mb"] = min(figures["memory_available_mb"], figures["memory_mb"])
        figures["disk_free_mb"] = min(figures["disk_free_mb"], figures["disk_total_mb"])
        return AgentInventory(gpus=gpus, labels=self.labels, **figures)

    def _log_gpus(self, gpus: list[GpuReport]) -> None:
        if gpus:
            names = ", ".join(f"{g.index}: {g.name} ({g.memory_mb} MB)" for g in gpus)
            log.info("GPUs: %d (%s)", len(gpus), names)

    def for_hello(self) -> AgentInventory:
        """The machine now, GPUs read afresh. A test-only file broken since the agent started
        is logged, and the last inventory the server took is sent again."""
        try:
            return self.read(fresh_gpus=True)
        except ConfigurationError as e:
            if self._acked is None:
                raise
            _say_once(str(e))
            return self._acked

    def for_poll(self) -> AgentInventory | None:
        """What to send with the next poll: the machine if it changed, else None. A broken
        test-only file is logged and sends nothing new."""
        try:
            inv = self.read()
        except ConfigurationError as e:
            _say_once(str(e))
            return None
        return inv if differs(inv, self._acked) else None

    def sent(self, inv: AgentInventory | None) -> None:
        """The server took ``inv`` (its hello or poll was answered)."""
        if inv is not None:
            self._acked = inv
