"""Launch a federation: as real Flower processes (one SuperLink, one SuperNode per site, ``flwr run``)
or on Flower's simulation engine (one SuperLink in ``--simulation`` mode, no SuperNodes: Flower runs
one virtual SuperNode per site as Ray actors in its ``flwr-simulation`` process).

Both run the same ServerApp and ClientApp (tuneproof/federated/flower_app.py). On one machine
(tests, the example) everything binds 127.0.0.1 with free ports; in production the same three
commands of the process mode run on separate machines (docs/federated.md). The Flower processes run under
``python`` (default: this interpreter), so ``flwr`` may live in its own environment: its pins
(fastapi, typer, protobuf) conflict with the serving stack's. Each process gets its own
``FLWR_HOME``: the server's under the run folder, each site's under that site's folder.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import tuneproof
from tuneproof.errors import FederationFailed
from tuneproof.fsutil import atomic_write_text
from tuneproof.protocol import load_protocol

_APP_PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "tuneproof-federation"
version = "1.0.0"
description = "A tuneproof federation (generated; the code is tuneproof.federated.flower_app)"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "tuneproof"

[tool.flwr.app.components]
serverapp = "tuneproof_federation.apps:server_app"
clientapp = "tuneproof_federation.apps:client_app"

[tool.flwr.app.config]
protocol = ""
run-dir = ""
sites-root = ""
engine = "processes"
"""
_APP_MODULE = (
    '"""Generated: the Flower app is tuneproof\'s own (tuneproof/federated/flower_app.py)."""\n\n'
    + (
        "from tuneproof.federated.flower_app import client_app, server_app\n\n"
        '__all__ = ["client_app", "server_app"]\n'
    )
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FederationFailed(f"{what} exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise FederationFailed(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


@dataclass
class LocalFederation:
    """The processes of a federation on this machine; ``stop`` ends them and their children."""

    protocol: Path
    run_dir: Path
    site_dirs: dict[str, Path]
    python: str = sys.executable
    simulation: bool = False
    logs: Path = field(init=False)
    superlink: subprocess.Popen[bytes] | None = None
    supernodes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    port: int = 0

    def __post_init__(self) -> None:
        self.protocol = self.protocol.resolve()
        self.run_dir = self.run_dir.resolve()
        self.logs = self.run_dir / "flower" / "logs"

    def _env(self, home: Path) -> dict[str, str]:
        env = dict(os.environ)
        bin_dir = str(Path(self.python).parent)
        # flower-superlink starts flower-superexec by name, so the interpreter's bin folder goes first.
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
        root = str(Path(tuneproof.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["FLWR_HOME"] = str(home)
        env.setdefault("TUNEPROOF_THREADS", "1")
        if self.simulation:
            # Ray's object store takes 30% of the machine's memory by default; the sites' messages
            # are a few MB, so 5% bounds its footprint (each site's actor holds 1 CPU: see
            # simulation_config).
            env.setdefault("RAY_DEFAULT_OBJECT_STORE_MEMORY_PROPORTION", "0.05")
        return env

    def _tool(self, name: str) -> str:
        return str(Path(self.python).parent / name)

    def _spawn(self, args: list[str], home: Path, log: str) -> subprocess.Popen[bytes]:
        home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        out = (self.logs / log).open("ab")
        # Its own session, so stop() can signal the process group (Flower's children included).
        return subprocess.Popen(
            args, env=self._env(home), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start(self, timeout: float = 120.0) -> None:
        self.port = free_port()
        home = self.run_dir / "flower" / "home"
        self.superlink = self._spawn(
            [
                self._tool("flower-superlink"),
                "--insecure",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                # The app's dependencies are this environment's; never let Flower fetch packages.
                "--disable-runtime-dependency-installation",
                *(["--simulation"] if self.simulation else []),
            ],
            home,
            "superlink.log",
        )
        _wait_port(self.port, self.superlink, timeout, "flower-superlink")
        if self.simulation:
            return  # the simulation engine starts the sites' virtual SuperNodes itself
        for name, folder in self.site_dirs.items():
            self.start_site(name, folder)

    def start_site(self, name: str, folder: Path) -> None:
        folder = folder.resolve()
        node_config = f'site="{name}" protocol="{self.protocol}" work-dir="{folder / "work"}"'
        self.supernodes[name] = self._spawn(
            [
                self._tool("flower-supernode"),
                "--insecure",
                "--superlink",
                f"127.0.0.1:{self.port}",
                "--host",
                "127.0.0.1",
                "--port",
                str(free_port()),
                "--node-config",
                node_config,
            ],
            folder / "flower",
            f"supernode-{name}.log",
        )

    def submit(self) -> str:
        """Write the Flower app and the connection, then ``flwr run`` it; returns flwr's output."""
        app = self.run_dir / "flower" / "app"
        atomic_write_text(app / "pyproject.toml", _APP_PYPROJECT)
        atomic_write_text(app / "tuneproof_federation" / "__init__.py", "")
        atomic_write_text(app / "tuneproof_federation" / "apps.py", _APP_MODULE)
        home = self.run_dir / "flower" / "home"
        connection = (
            '[superlink]\ndefault = "local"\n\n[superlink.local]\n'
            f'address = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )
        atomic_write_text(home / "config.toml", connection)
        root = self._sites_root()
        engine = "simulation" if self.simulation else "processes"
        run_config = (
            f'protocol="{self.protocol}" run-dir="{self.run_dir}" sites-root="{root}" engine="{engine}"'
        )
        extra = ["--federation-config", simulation_config(len(self.site_dirs))] if self.simulation else []
        done = subprocess.run(
            [self._tool("flwr"), "run", str(app), "local", "--run-config", run_config, *extra],
            env=self._env(home),
            capture_output=True,
            timeout=120,
        )
        text = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        if done.returncode != 0:
            raise FederationFailed(f"flwr run failed ({done.returncode}): {text.strip()[-2000:]}")
        return text

    def _sites_root(self) -> Path:
        """SITES_ROOT, where a simulated site finds its folder (SITES_ROOT/sites/<name>)."""
        roots = {folder.resolve().parent.parent for folder in self.site_dirs.values()}
        names_fit = all(folder.name == name for name, folder in self.site_dirs.items())
        if self.simulation and (len(roots) != 1 or not names_fit):
            raise FederationFailed("a simulation needs every site's folder at SITES_ROOT/sites/<name>")
        return roots.pop()

    def wait(self, timeout: float) -> dict[str, object]:
        """Until federation.json says the federation finished (passed, rejected or failed)."""
        state_path = self.run_dir / "federation.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if state_path.exists():
                state: dict[str, object] = json.loads(state_path.read_text())
                if state.get("status") in ("passed", "rejected", "failed") and (
                    state["status"] == "failed" or (self.run_dir / "manifest.json").exists()
                ):
                    return state
            time.sleep(0.5)
        raise FederationFailed(f"the federation did not finish within {timeout:.0f}s (see {self.logs})")

    def kill_site(self, name: str) -> None:
        _kill_group(self.supernodes.pop(name))

    def stop(self) -> None:
        for proc in list(self.supernodes.values()):
            _kill_group(proc)
        self.supernodes.clear()
        if self.superlink is not None:
            _kill_group(self.superlink)
            self.superlink = None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process, its group and every descendant (Flower detaches its SuperExec)."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=30)


def simulation_config(sites: int) -> str:
    """Flower's federation config for a simulation: one virtual SuperNode per site, each a Ray actor
    holding one CPU, and Ray told of at most as many CPUs as the machine has, so the sites train one
    or a few at a time instead of oversubscribing the cores (Flower's default is 2 CPUs a client and
    every core of the machine)."""
    cpus = max(1, min(sites, os.cpu_count() or 1))
    return (
        f"num-supernodes={sites} client-resources-num-cpus=1 client-resources-num-gpus=0.0 "
        f"init-args-num-cpus={cpus} init-args-num-gpus=0"
    )


def simulated_site(protocol: Path, sites_root: Path, partition_id: int, partitions: int) -> tuple[str, Path]:
    """The site a simulated SuperNode plays: partition ``i`` is the protocol's ``i``-th site, and its
    folder is SITES_ROOT/sites/<name>/work, the same as a real SuperNode's ``work-dir`` on one machine."""
    fed = load_protocol(protocol).protocol.federated
    if fed is None:
        raise FederationFailed(f"{protocol}: the protocol has no federated section")
    if partitions != len(fed.sites) or not 0 <= partition_id < partitions:
        raise FederationFailed(
            f"simulated node {partition_id} of {partitions}: the protocol names {len(fed.sites)} sites"
        )
    name = fed.sites[partition_id].name
    return name, sites_root / "sites" / name / "work"


def site_dirs_for(protocol: Path, root: Path) -> dict[str, Path]:
    fed = load_protocol(protocol).protocol.federated
    if fed is None:
        raise FederationFailed(f"{protocol}: the protocol has no federated section")
    return {s.name: root / "sites" / s.name for s in fed.sites}


def run_local(
    protocol: Path,
    run_dir: Path,
    sites_root: Path,
    python: str = sys.executable,
    timeout: float = 3600,
    simulation: bool = False,
) -> dict[str, object]:
    """A whole federation on this machine; resumes from ``run_dir``'s checkpoints if it has any."""
    fed = LocalFederation(
        protocol, run_dir, site_dirs_for(protocol, sites_root), python=python, simulation=simulation
    )
    try:
        fed.start()
        fed.submit()
        return fed.wait(timeout)
    finally:
        fed.stop()
