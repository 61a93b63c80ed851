"""Deployment files: Dockerfile (hadolint), compose (Compose spec), nginx (real nginx), k8s."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from app.settings import Settings
from tests.servers import free_port, start_uvicorn, stop, wait_ready

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
UPSTREAM_LINE = "server api:8000 resolve max_fails=3 fail_timeout=10s;"


def tool(name: str) -> str:
    """A command from the venv, else from PATH (and /usr/sbin, where Debian puts nginx)."""
    here = BIN / name
    if here.exists():
        return str(here)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        pytest.fail(f"{name} is not installed: run `make test`, which installs it")
    return found


# ------------------------------------------------------------------ Dockerfile


def test_dockerfile_passes_hadolint() -> None:
    run = subprocess.run(
        [tool("hadolint"), "--failure-threshold", "info", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_dockerfile_is_runtime_only_non_root_and_probed() -> None:
    text = (ROOT / "Dockerfile").read_text()
    runtime = text.split("AS runtime", 1)[1]
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert "[test]" not in text and "[bench]" not in text
    # Dependencies come from pyproject.toml alone, in a layer before the code is copied.
    assert text.index("COPY pyproject.toml") < text.index("COPY engine") < text.index("COPY app")
    assert re.search(r"^USER (?!root|0\b)\S+", runtime, re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", runtime, re.M)
    assert re.search(r"^STOPSIGNAL SIGTERM", runtime, re.M)
    for var in ("WORKERS", "TIMEOUT_GRACEFUL_SHUTDOWN", "LIMIT_CONCURRENCY"):
        assert f"UVICORN_{var}=" in runtime


def test_dockerignore_lets_in_only_the_package() -> None:
    lines = [
        ln
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln and not ln.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    # client/: autodiff-client, which the service installs from this tree (the CLI's --url).
    assert allowed == {"pyproject.toml", "README.md", "LICENSE", "client", "engine", "app"}


def runtime_env_and_cmd() -> tuple[dict[str, str], list[str], str]:
    """The runtime stage's ENV, its CMD and its HEALTHCHECK code, as the Dockerfile says."""
    runtime = (ROOT / "Dockerfile").read_text().split("AS runtime", 1)[1]
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV (.*?)(?<!\\)\n", runtime, re.M | re.S):
        for key, value in re.findall(r"(\w+)=(\S+)", block.replace("\\\n", " ")):
            env[key] = value
    cmd_line = re.search(r"^CMD (\[.*\])$", runtime, re.M)
    assert cmd_line, "CMD not found"
    cmd = json.loads(cmd_line.group(1))
    probe = re.search(r'CMD \["python", "-c", "(.+)"\]\n', runtime)
    assert probe, "HEALTHCHECK CMD not found"
    return env, cmd, probe.group(1).replace('\\"', '"')


def test_image_command_serves_from_its_env_and_stops_on_sigterm(tmp_path: Path) -> None:
    # The image's CMD with the image's ENV (host and port moved to loopback), from an
    # empty working directory: the HEALTHCHECK passes while it runs and fails before,
    # and SIGTERM (the STOPSIGNAL) stops it cleanly within the graceful timeout.
    image_env, cmd, probe = runtime_env_and_cmd()
    assert image_env["UVICORN_WORKERS"] == "2" and cmd[0] == "uvicorn"
    assert image_env["UVICORN_ACCESS_LOG"] == "false"  # the app logs each request itself
    port = free_port()
    env = {
        **os.environ,
        **{k: v for k, v in image_env.items() if k != "PATH"},
        "UVICORN_HOST": "127.0.0.1",
        "UVICORN_PORT": str(port),
        "AUTODIFF_WORKERS": "1",
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    dead = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=30)
    assert dead.returncode != 0
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [tool(cmd[0]), *cmd[1:]], cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        alive = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, timeout=30
        )
        assert alive.returncode == 0, alive.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=float(image_env["UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN"]) + 10)
    # Uvicorn re-raises the signal after its shutdown, so the status is -SIGTERM.
    assert code in (0, -signal.SIGTERM)
    text = log.read_text()
    assert f"Uvicorn running on http://127.0.0.1:{port}" in text  # UVICORN_* env was read
    assert "Application shutdown complete" in text  # the lifespan stopped the pool


# --------------------------------------------------------------------- compose


def compose() -> dict:
    """The compose file, parsed."""
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_validates_against_the_compose_spec() -> None:
    run = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_compose_api_service_is_limited_hardened_and_probed() -> None:
    api = compose()["services"]["api"]
    assert "/healthz" in " ".join(api["healthcheck"]["test"])
    assert api["deploy"]["restart_policy"]["condition"] == "any"
    assert api["read_only"] is True
    assert {"type": "tmpfs", "target": "/tmp"}.items() <= api["volumes"][0].items()
    limits = api["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0 and limits["memory"] and limits["pids"] > 0
    assert api["deploy"]["replicas"] >= 2
    assert {"update_config", "restart_policy"} <= set(api["deploy"])
    assert "ports" not in api, "replicas must not bind host ports, or --scale collides"


# A service key and the `deploy:` key that sets the same thing. Compose v2 refuses a file
# with distinct values in both ("can't set distinct values on 'pids_limit' and
# 'deploy.resources.limits.pids'"), and takes `deploy.restart_policy` over `restart`.
SAME_SETTING = {
    "pids_limit": ("resources", "limits", "pids"),
    "cpus": ("resources", "limits", "cpus"),
    "mem_limit": ("resources", "limits", "memory"),
    "mem_reservation": ("resources", "reservations", "memory"),
    "scale": ("replicas",),
    "restart": ("restart_policy",),
}


def test_compose_says_each_setting_once() -> None:
    for name, service in compose()["services"].items():
        deploy = service.get("deploy", {})
        for key, path in SAME_SETTING.items():
            node = deploy
            for part in path[:-1]:
                node = node.get(part, {})
            # Compose v2 compares with the deploy value even when it is absent (then 0).
            both = key in service and (path[-1] in node or path[0] == "resources" and node)
            assert not both, f"{name}: {key} and deploy.{'.'.join(path)} set one thing twice"
        policy = deploy.get("restart_policy", {})
        # `any` is Docker's `always`, which takes no retry count: `up` fails at create.
        if policy.get("condition", "any") == "any":
            assert "max_attempts" not in policy, f"{name}: max_attempts with condition any"


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR:-default} and ${VAR} substitution, from `env` only."""
    pattern = r"\$\{(\w+)(?::-([^}]*))?\}"
    return re.sub(pattern, lambda m: env.get(m.group(1)) or m.group(2) or "", text)


def published(env: dict[str, str]) -> list[tuple[str, str]]:
    """(host address, host port) of every published port of every service."""
    out = []
    for service in compose()["services"].values():
        for port in service.get("ports", []):
            host_ip, host_port, _ = interpolate(str(port), env).rsplit(":", 2)
            out.append((host_ip, host_port))
    return out


def test_compose_publishes_on_loopback_unless_told() -> None:
    assert published({}) == [("127.0.0.1", "8000")]
    told = {"AUTODIFF_BIND_ADDRESS": "0.0.0.0", "AUTODIFF_PORT": "9000"}
    assert published(told) == [("0.0.0.0", "9000")]


def test_readme_says_how_to_publish_and_why_keys_then() -> None:
    readme = (ROOT / "README.md").read_text()
    deployment = readme.split("## Deployment", 1)[1].split("\n## ", 1)[0]
    for needed in ("AUTODIFF_BIND_ADDRESS", "127.0.0.1", "AUTODIFF_API_KEYS", "make deploy-test"):
        assert needed in deployment, f"README's Deployment section does not mention {needed}"


def compose_v2() -> list[str]:
    """`docker compose` (v2) or `docker-compose` v2, else skip: `make deploy-test` installs it."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        run = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=30)
        if run.returncode == 0 and re.search(r"version v?2\.", run.stdout):
            return command
    pytest.skip("Compose v2 is not installed (make deploy-test installs Debian trixie's)")


def test_compose_v2_accepts_the_file_and_publishes_on_loopback() -> None:
    command = compose_v2()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODIFF_")}
    checked = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "-q"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    rendered = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ports = json.loads(rendered.stdout)["services"]["nginx"]["ports"]
    assert [(p["host_ip"], p["published"]) for p in ports] == [("127.0.0.1", "8000")]


def test_compose_settings_are_real_settings() -> None:
    env = compose()["services"]["api"]["environment"]
    names = {k.removeprefix("AUTODIFF_").lower() for k in env if k.startswith("AUTODIFF_")}
    # Every setting, so any AUTODIFF_ variable in the environment reaches the replicas.
    assert names == set(Settings.model_fields), names ^ set(Settings.model_fields)


# Chosen on purpose for a replica with one CPU; every other default must be the app's.
# The replicas share the compose file's redis service as their store.
COMPOSE_OVERRIDES = {"workers": 1, "store_url": "redis://redis:6379/0"}


def test_compose_defaults_match_the_app_defaults() -> None:
    env = compose()["services"]["api"]["environment"]
    for var, value in env.items():
        if not var.startswith("AUTODIFF_"):
            continue
        match = re.fullmatch(r"\$\{(\w+):-(.*)\}", str(value))
        assert match and match.group(1) == var, f"{var} should be ${{{var}:-default}}"
        name = var.removeprefix("AUTODIFF_").lower()
        field = Settings.model_fields[name]
        want = COMPOSE_OVERRIDES.get(name, field.get_default(call_default_factory=True))
        got = Settings.model_validate({name: match.group(2)}).__getattribute__(name)
        assert got == want, f"{var}: compose defaults to {got!r}, the app to {want!r}"


def test_compose_nginx_fronts_the_api_with_our_config() -> None:
    nginx = compose()["services"]["nginx"]
    assert nginx["depends_on"]["api"]["condition"] == "service_healthy"
    assert "./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert nginx["read_only"] is True
    assert nginx["ports"] == ["${AUTODIFF_BIND_ADDRESS:-127.0.0.1}:${AUTODIFF_PORT:-8000}:8080"]


# ----------------------------------------------------------------------- nginx


def test_nginx_config_caps_body_passes_request_id_and_resolves_replicas() -> None:
    text = NGINX_CONF.read_text()
    assert "resolver 127.0.0.11" in text
    assert text.count(UPSTREAM_LINE) == 1
    assert "client_max_body_size 32m;" in text
    assert f"{Settings().max_body_bytes // 2**20}m" == "32m", "nginx cap out of step with settings"
    assert "proxy_set_header X-Request-ID $autodiff_request_id;" in text


def local_nginx_conf(tmp: Path, listen: int, backends: list[int]) -> Path:
    """The shipped config with only what loopback needs changed: user, port, upstreams, /tmp."""
    # Writable paths first: tmp itself usually lives under /tmp.
    text = NGINX_CONF.read_text().replace("/tmp/", f"{tmp}/")
    swaps = {
        "user nginx;": f"user {getpass.getuser()};",
        "listen 8080;": f"listen 127.0.0.1:{listen};",
        UPSTREAM_LINE: " ".join(f"server 127.0.0.1:{p};" for p in backends),
        "access_log /dev/stdout autodiff;": f"access_log {tmp}/access.log autodiff;",
    }
    for old, new in swaps.items():
        assert text.count(old) == 1, f"expected exactly one {old!r} in nginx.conf"
        text = text.replace(old, new)
    path = tmp / "nginx.conf"
    path.write_text(text)
    return path


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    conf = local_nginx_conf(tmp_path, free_port(), [free_port(), free_port()])
    run = subprocess.run(
        [tool("nginx"), "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 0, run.stderr
    assert "test is successful" in run.stderr


def start_app(port: int) -> subprocess.Popen[bytes]:
    """The real app under uvicorn in a subprocess on a loopback port."""
    env = {**os.environ, "AUTODIFF_WORKERS": "1", "AUTODIFF_LOG_LEVEL": "warning"}
    return start_uvicorn(port, env)


@contextlib.contextmanager
def uvicorn_apps(*ports: int) -> Iterator[None]:
    """The real app on each port (started together), until the block ends."""
    procs = [start_app(port) for port in ports]
    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        yield
    finally:
        for proc in procs:
            stop(proc)


@pytest.fixture(scope="module")
def two_backends_behind_nginx(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[int, list[int], Path]]:
    """Two uvicorn processes of the real app, with nginx on loopback in front of them."""
    tmp_path = tmp_path_factory.mktemp("nginx")
    backends = [free_port(), free_port()]
    listen = free_port()
    conf = local_nginx_conf(tmp_path, listen, backends)
    with uvicorn_apps(*backends):
        proc = subprocess.Popen(
            [
                tool("nginx"),
                "-e",
                "stderr",
                "-p",
                str(tmp_path),
                "-c",
                str(conf),
                "-g",
                "daemon off;",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_ready(f"http://127.0.0.1:{listen}/nginx-health", proc)
            yield listen, backends, tmp_path / "access.log"
        finally:
            stop(proc)


def healthz_count(port: int) -> float:
    """How many /healthz requests one backend has answered, from its own /metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    pattern = r'^autodiff_http_requests_total\{[^}]*endpoint="/healthz"[^}]*\} (\S+)$'
    return sum(float(m) for m in re.findall(pattern, text, re.M))


def test_nginx_spreads_requests_over_both_backends(
    two_backends_behind_nginx: tuple[int, list[int], Path],
) -> None:
    listen, backends, _ = two_backends_behind_nginx
    before = [healthz_count(p) for p in backends]
    with httpx.Client(base_url=f"http://127.0.0.1:{listen}", timeout=10) as http:
        for _ in range(20):
            assert http.get("/healthz").status_code == 200
        answer = http.post(
            "/grad", json={"expression": "2 * dot(x, x)", "inputs": {"x": [0, 1, 2, 3]}}
        )
    assert answer.status_code == 200 and answer.json()["value"] == 28.0
    served = [healthz_count(p) - b for p, b in zip(backends, before, strict=True)]
    assert sum(served) == 20
    assert min(served) >= 5, f"round robin should split 20 requests, got {served}"


def test_nginx_passes_or_mints_the_request_id_and_caps_bodies(
    two_backends_behind_nginx: tuple[int, list[int], Path],
) -> None:
    listen, _, access_log = two_backends_behind_nginx
    with httpx.Client(base_url=f"http://127.0.0.1:{listen}", timeout=30) as http:
        kept = http.get("/healthz", headers={"X-Request-ID": "client-id-42"})
        minted = http.get("/healthz")
        too_big = http.post(
            "/grad", content=b"0" * (33 * 2**20), headers={"content-type": "application/json"}
        )
    assert kept.headers["x-request-id"] == "client-id-42"
    # The id the app answered with is the one nginx minted and logged.
    minted_id = minted.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", minted_id)
    # nginx writes the log line once the response is sent: poll briefly for it.
    deadline = time.monotonic() + 10
    while f'"request_id":"{minted_id}"' not in access_log.read_text():
        assert time.monotonic() < deadline, "nginx did not log the minted request id"
        time.sleep(0.05)
    assert too_big.status_code == 413
    assert re.fullmatch(r"[0-9a-f]{32}", too_big.headers["x-request-id"])  # nginx's own answer
    assert len(minted.headers.get_list("x-request-id")) == 1


# ------------------------------------------------------------------ kubernetes


def k8s_docs() -> dict[str, dict]:
    """The manifests in deploy/k8s, by kind."""
    docs: dict[str, dict] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def test_k8s_has_deployment_service_and_autoscaler() -> None:
    docs = k8s_docs()
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "Kustomization"} <= set(docs)
    kustomize = docs["Kustomization"]["resources"]
    assert sorted(kustomize) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"
    )


def test_k8s_probes_and_wiring() -> None:
    docs = k8s_docs()
    deployment, service, hpa = (
        docs[k] for k in ("Deployment", "Service", "HorizontalPodAutoscaler")
    )
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    port_names = {p["name"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["port"] in port_names
    assert container["resources"]["limits"]["cpu"] and container["resources"]["requests"]["cpu"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in port_names
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    env = {e["name"] for e in container["env"]}
    settings = {n.removeprefix("AUTODIFF_").lower() for n in env if n.startswith("AUTODIFF_")}
    assert settings <= set(Settings.model_fields)


# ------------------------------------------------------------ Debian packages


def shell_sources() -> dict[str, str]:
    """Every file of ours that can run apt-get, with continued lines joined."""
    paths = [ROOT / "Makefile", ROOT / ".ci" / "run", ROOT / "Dockerfile"]
    paths += sorted((ROOT / "deploy").rglob("*.sh"))
    return {str(p.relative_to(ROOT)): p.read_text().replace("\\\n", " ") for p in paths}


def test_every_apt_install_skips_recommends() -> None:
    # `apt-get install` (or make's $(APT_GET) install) anywhere: recommends would pull in
    # 117 packages for chromium (avahi, CUPS, Samba libraries, a systemd upgrade).
    pattern = re.compile(
        r"(?:apt-get|\$\(APT_GET\))(?:\s+-\S+(?:\s+\S+=\S+)?)*\s+install\b[^\n;|&]*"
    )
    found = []
    for name, text in shell_sources().items():
        for match in pattern.finditer(text):
            found.append(name)
            assert "--no-install-recommends" in match.group(0), f"{name}: {match.group(0)}"
    assert "Makefile" in found and "deploy/test/run.sh" in found


def test_readme_names_every_debian_package_make_test_installs() -> None:
    makefile = (ROOT / "Makefile").read_text()
    system_deps = makefile.split("\nsystem-deps:", 1)[1].split("\n\n", 1)[0]
    packages = re.findall(r'missing="\$\$missing (\S+)"', system_deps)
    assert {"chromium", "nginx"} <= set(packages)
    readme = (ROOT / "README.md").read_text()
    install = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    for package in packages:
        assert f"`{package}`" in install, f"README does not say why make test installs {package}"


def test_compose_replicas_share_a_redis_reachable_only_on_its_network() -> None:
    services = compose()["services"]
    redis_service = services["redis"]
    assert "ports" not in redis_service  # never published
    assert "--protected-mode" in redis_service["command"]  # else it refuses the replicas
    assert services["api"]["depends_on"]["redis"]["condition"] == "service_healthy"
    url = services["api"]["environment"]["AUTODIFF_STORE_URL"]
    assert url == "${AUTODIFF_STORE_URL:-redis://redis:6379/0}"
