"""The agent's configuration: one typed value built at the entry point.

Nothing below the entry point reads the environment or global defaults: the
CLI builds an :class:`AgentConfig` and passes it down.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from policies.model import SignerSet
from policies.verify import DeviceScope


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/overt``, else ``~/.local/state/overt``."""
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "overt"


@dataclass(frozen=True)
class AgentConfig:
    #: The pinned policy signing keys and threshold (used until a rotation).
    trusted: SignerSet
    #: The device's tenant and group, checked against every policy's scope.
    tenant: str
    device_group: str
    state_dir: Path
    #: A signed policy file to accept at start (device management drops it there).
    policy_file: Path | None = None
    #: Wall-clock seconds since the epoch; tests inject their own.
    clock: Callable[[], float] = field(default=time.time)
    #: Batch thresholds: a batch closes when it is this old or this large.
    batch_max_age_seconds: float = 60.0
    batch_max_bytes: int = 512 * 1024

    @property
    def device(self) -> DeviceScope:
        return DeviceScope(tenant=self.tenant, group=self.device_group)
