"""securehub demo: lock and load the bundled example repos from a local git server.

Run with `make demo`. Everything happens on 127.0.0.1 in a temporary
directory: a git smart-HTTP server publishes examples/repos/*, an HTTP server
serves generated weights (reached through a mirror of
https://weights.example.com/), and the `securehub` CLI and Python API are
used exactly as a user would.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the loopback servers live with the tests

import torch  # noqa: E402
from safetensors.torch import save  # noqa: E402

import securehub  # noqa: E402
from tests._servers import ArtifactServer, GitServer, RepoFactory  # noqa: E402

BOLD, DIM, GREEN, RED, RESET = (
    ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m") if sys.stdout.isatty() else ("", "", "", "", "")
)


def step(title: str) -> None:
    print(f"\n{BOLD}== {title}{RESET}")


def ok(text: str) -> None:
    print(f"{GREEN}ok{RESET}  {text}")


def refused(text: str) -> None:
    print(f"{RED}refused{RESET}  {text}")


def cli(*args: str, env: dict[str, str], cwd: Path, expect: int = 0) -> str:
    """Run the securehub CLI as a user would, show its output, check its exit code."""
    print(f"{DIM}$ securehub {' '.join(shlex.quote(a) for a in args)}{RESET}")
    proc = subprocess.run(
        [sys.executable, "-m", "securehub", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    for line in (proc.stdout + proc.stderr).strip().splitlines():
        print(f"  {line}")
    if proc.returncode != expect:
        raise SystemExit(f"demo failed: expected exit {expect}, got {proc.returncode}")
    return proc.stdout + proc.stderr


def tinynet_weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(1234)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    return {k: v.contiguous() for k, v in model.state_dict().items()}


class Listener:
    """A TCP listener standing in for an attacker's server; counts what reaches it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self._stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.received += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="securehub-demo-"))
    git = GitServer(work / "git-root")
    git.start()
    weights = ArtifactServer()
    weights.start()
    listener = Listener()
    try:
        status = run(work, git, weights, listener)
    finally:
        listener.close()
        weights.stop()
        git.stop()
    shutil.rmtree(work, ignore_errors=True)  # kept when a step failed, for inspection
    return status


def publish(factory: RepoFactory, name: str, src: Path, replacements: dict[str, str]) -> object:
    files: dict[str, str] = {}
    for path in sorted(src.rglob("*")):
        if path.is_file():
            text = path.read_text()
            for old, new in replacements.items():
                text = text.replace(old, new)
            files[str(path.relative_to(src))] = text
    repo = factory.make_repo(name, files=files)
    repo.tag("v1.0", commit=repo.head_commit(), annotated=True)
    return repo


def run(work: Path, git: GitServer, weights: ArtifactServer, listener: Listener) -> int:
    project = work / "project"
    project.mkdir()
    hub = work / "hub"
    secret = work / "victim-home" / ".ssh" / "id_rsa"
    secret.parent.mkdir(parents=True)
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY----- (demo secret)\n")
    canary = work / "pwned.txt"

    step("1. Publish the example repos to a local git server")
    factory = RepoFactory(git)
    tiny = publish(factory, "acme/tinyvision", ROOT / "examples/repos/tinyvision", {})
    publish(
        factory,
        "acme/evil",
        ROOT / "examples/repos/evil",
        {"@SECRET_FILE@": str(secret), "@LISTENER_PORT@": str(listener.port), "@CANARY_FILE@": str(canary)},
    )
    blob = save(tinynet_weights())
    weights.put("/tinyvision/tinynet.safetensors", blob)
    ok(f"git server {git.base_url}: acme/tinyvision, acme/evil (tag v1.0)")
    ok(f"weights at {weights.base_url}, mirrored for https://weights.example.com/")

    env = {k: v for k, v in os.environ.items() if not k.startswith("SECUREHUB_") and k != "GITHUB_TOKEN"}
    env.update(
        SECUREHUB_GITHUB_URL=git.base_url,
        SECUREHUB_DIR=str(hub),
        SECUREHUB_MIRRORS=f'{{"https://weights.example.com/": "{weights.base_url}/"}}',
        GITHUB_TOKEN="ghp_demoTokenThatMustNeverLeak0000000000",
    )
    os.environ.update(env)
    for k in [k for k in os.environ if k not in env]:
        del os.environ[k]
    os.chdir(project)

    step("2. Lock a tag under the strict policy (commit, tree digest, entrypoint artifacts)")
    cli(
        "lock",
        "acme/tinyvision:v1.0",
        "-e",
        "tinynet",
        "--arg",
        "pretrained=true",
        "--policy",
        "strict",
        env=env,
        cwd=project,
    )
    print((project / "hub.lock").read_text())

    step("3. Load it: hubconf runs in the sandbox, the module is rebuilt here from torch.nn")
    model = securehub.load("acme/tinyvision:v1.0", "tinynet", pretrained=True, policy="strict")
    reference = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    )
    reference.load_state_dict(tinynet_weights())
    x = torch.rand(2, 8, 8)
    same = torch.equal(model(x), reference.eval()(x))
    ok(f"{type(model).__name__} loaded; outputs equal the reference model: {same}")
    if not same:
        raise SystemExit("demo failed: outputs differ")
    log = hub / "audit.jsonl"
    print(f"  audit log: {log} ({len(log.read_text().splitlines())} lines); last line:")
    print(f"  {DIM}{log.read_text().splitlines()[-1][:400]}{RESET}")

    step("4. Refs securehub refuses")
    commit = tiny.head_commit()  # type: ignore[attr-defined]
    cli("lock", f"acme/tinyvision:{commit}", "--policy", "strict", env=env, cwd=project, expect=1)
    cli("lock", "acme/tinyvision:main", "--policy", "strict", env=env, cwd=project, expect=1)
    cli("lock", "acme/tinyvision:pull/1/head", env=env, cwd=project, expect=1)

    step("5. The tag is force-moved upstream after locking")
    moved = tiny.commit({"hubconf.py": "raise SystemExit('compromised release')\n"})  # type: ignore[attr-defined]
    tiny.force_tag("v1.0", moved)  # type: ignore[attr-defined]
    cli("lock", "--check", "--policy", "strict", env=env, cwd=project, expect=1)
    securehub.load("acme/tinyvision:v1.0", "tinynet", pretrained=True, policy="strict", verbose=False)
    ok("load still uses the pinned commit, not the moved tag")

    step("6. A malicious repo: reads ~/.ssh/id_rsa, writes a file, phones home")
    cli("lock", "acme/evil:v1.0", "--policy", "strict", env=env, cwd=project)
    cli("load", "acme/evil:v1.0", "resnet18", "--policy", "strict", env=env, cwd=project, expect=1)
    ok(f"canary file written: {canary.exists()}; connections received by the listener: {listener.received}")
    if canary.exists() or listener.received:
        raise SystemExit("demo failed: the malicious repo had an effect")

    step("7. Weights swapped on the server after locking; a fresh CI machine loads")
    tampered = tinynet_weights()
    tampered["1.weight"] = tampered["1.weight"] + 1
    weights.put("/tinyvision/tinynet.safetensors", save(tampered))
    fresh = dict(env, SECUREHUB_DIR=str(work / "fresh-hub"))
    cli(
        "load",
        "acme/tinyvision:v1.0",
        "tinynet",
        "--arg",
        "pretrained=true",
        "--policy",
        "strict",
        env=fresh,
        cwd=project,
        expect=1,
    )
    blobs = list((work / "fresh-hub" / "artifacts" / "sha256").iterdir())
    ok(f"tampered weights cached on the fresh machine: {len(blobs)}")
    if blobs:
        raise SystemExit("demo failed: tampered weights were cached")

    step("Done")
    ok("every step behaved as expected")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
