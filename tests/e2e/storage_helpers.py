"""Helpers for the storage e2e tests: a private dockerd on a loop-mounted filesystem,
images of a chosen size made without a registry, and ``docker system df`` parsing.

The private engine runs in its own network namespace (design.md: "A second engine";
``nsenter --net=``, never ``ip netns exec``, and ``--bridge none`` only inside the
namespace), with ``--data-root`` on a small ext4 or btrfs filesystem in a file, so
that tests control how full "the disk" is and never touch the shared engine's
images or containers. :meth:`LoopEngine.close` removes the engine, the mount, the
loop device, the file and the namespace, also after a failure.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import docker

from conftest import IMAGE
from tests.support.engine import PrivateEngine

MB = 1000 * 1000  # docker's units are decimal
MiB = 1024 * 1024
_HUMAN = re.compile(r"^\s*([\d.]+)\s*([kMGTP]?B)\s*")
_UNITS = {"B": 1, "kB": 1000, "MB": 1000 ** 2, "GB": 1000 ** 3, "TB": 1000 ** 4, "PB": 1000 ** 5}


def run(*argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, **kw)


class LoopEngine:
    """A dockerd on its own loop-mounted filesystem, in its own network namespace.

    The loop filesystem is this class's; the dockerd itself is a
    :class:`tests.support.engine.PrivateEngine` with its data root on it.

    Args:
        name: unique name (netns, /run/NAME, /mnt/NAME, /var/tmp/NAME.img).
        fs: "ext4" (engine driver overlay2) or "btrfs" (driver btrfs).
        size: file size for ``truncate -s`` (e.g. "1G").
        quota: enable btrfs quotas (exclusive sizes per subvolume).
    """

    def __init__(self, name: str, fs: str = "ext4", size: str = "1G", quota: bool = False):
        self.name, self.fs, self.size, self.quota = name, fs, size, quota
        self.img = Path(f"/var/tmp/{name}.img")
        self.mnt = Path(f"/mnt/{name}")
        self.data_root = self.mnt / "docker"
        self.engine = PrivateEngine(name, data_root=self.data_root,
                                    extra_args=("--storage-driver", "btrfs" if fs == "btrfs" else "overlay2"))
        self.host = self.engine.host
        self._netns = self._mounted = False

    def start(self) -> "LoopEngine":
        self.engine.add_netns()
        self._netns = True
        run("truncate", "-s", self.size, str(self.img))
        if self.fs == "btrfs":
            run("mkfs.btrfs", "-q", "-f", str(self.img))
        else:
            run("mkfs.ext4", "-q", "-F", "-m", "0", str(self.img))
        self.mnt.mkdir(parents=True, exist_ok=True)
        run("mount", "-o", "loop", str(self.img), str(self.mnt))
        self._mounted = True
        if self.fs == "btrfs" and self.quota:
            run("btrfs", "quota", "enable", str(self.mnt))
        self.engine.start()
        self.engine.load_image(IMAGE)
        return self

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, timeout=120)

    def used_bytes(self) -> int:
        return shutil.disk_usage(self.mnt).used

    def close(self) -> None:
        """Stop dockerd, unmount, detach the loop device, delete the file and netns. Never raises."""
        self.engine.stop()
        if self._mounted:
            for _ in range(20):
                if run("umount", str(self.mnt), check=False).returncode == 0:
                    break
                time.sleep(0.5)
            else:
                run("umount", "-l", str(self.mnt), check=False)
        for line in run("losetup", "-j", str(self.img), check=False).stdout.splitlines():
            dev = line.split(":", 1)[0]
            if dev:
                run("losetup", "-d", dev, check=False)
        self.img.unlink(missing_ok=True)
        try:
            self.mnt.rmdir()
        except OSError as e:  # still busy: a later run's name differs, so it does no harm
            print(f"storage_helpers: cannot remove {self.mnt}: {e}")
        if self._netns:
            self.engine.teardown()


def tar_with_file(nbytes: int, name: str = "blob") -> bytes:
    """A tar archive holding one file of ``nbytes`` random bytes (incompressible,
    unique, so every import is a distinct image of that size)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = nbytes
        tar.addfile(info, io.BytesIO(os.urandom(nbytes)))
    return buf.getvalue()


def import_image(client: docker.DockerClient, ref: str, nbytes: int) -> str:
    """``docker import`` an image of about ``nbytes`` as ``ref``; returns its id."""
    repo, tag = ref.rsplit(":", 1)
    out = client.api.import_image_from_data(tar_with_file(nbytes), repository=repo, tag=tag)
    return client.images.get(ref).id if out is not None else ""


def human_to_bytes(text: str) -> int:
    """``52.43MB`` / ``0B`` / ``1.2GB (95%)`` -> bytes (docker's decimal units)."""
    m = _HUMAN.match(text)
    if not m:
        raise ValueError(f"not a docker size: {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def docker_system_df(host: str) -> dict[str, dict[str, int]]:
    """``docker system df`` of an engine, by type (Images, Containers, Local Volumes,
    Build Cache): TotalCount, Active, Size and Reclaimable in bytes."""
    r = run("docker", "-H", host, "system", "df", "--format", "{{json .}}")
    out = {}
    for line in r.stdout.splitlines():
        row = json.loads(line)
        out[row["Type"]] = {"count": int(row["TotalCount"]), "active": int(row["Active"]),
                            "bytes": human_to_bytes(row["Size"]), "reclaimable_bytes": human_to_bytes(row["Reclaimable"])}
    return out


def within(ours: int, theirs: int, rel: float = 0.01) -> bool:
    """Equal within ``rel`` of the larger (docker prints 4 significant digits: its
    rounding is at most 0.05 %); one byte of slack for tiny values."""
    return abs(ours - theirs) <= rel * max(ours, theirs) + 1
