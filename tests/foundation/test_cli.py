"""The command line, run as a real process: exit codes, messages, start and SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sidecar import __version__
from tests.support.process import http_get, local_ports, run_sidecar, wait_until

SIDECAR = [sys.executable, "-m", "sidecar"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SIDECAR, *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )


def test_version() -> None:
    done = cli("version")
    assert done.returncode == 0
    assert done.stdout.startswith(f"causality-sidecar {__version__} ")


def test_console_script_is_the_same_program() -> None:
    script = shutil.which("causality-sidecar", path=str(Path(sys.executable).parent))
    assert script, "console script not installed in the venv"
    done = subprocess.run([script, "version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert done.stdout == cli("version").stdout


def test_check_config_prints_the_effective_config(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("proxy: {upstream: 'http://127.0.0.1:9000', connect_timeout: 500ms}\n")
    done = cli("check-config", str(path))
    assert done.returncode == 0, done.stderr
    effective = yaml.safe_load(done.stdout)
    assert effective["proxy"]["upstream"] == "http://127.0.0.1:9000"
    assert effective["proxy"]["connect_timeout"] == "500ms"
    assert effective["admin"]["listen"] == "0.0.0.0:9464"  # defaults filled in
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("content", "message"),
    [("proxy: {connect_timeout: soon}\n", "proxy.connect_timeout: expected a duration like 2s"),
     ("proxy: {colour: blue}\n", "proxy.colour: unknown key"),
     ("[1, 2]\n", "must hold a mapping at the top level"),
     ("ingest: {listen: 'localhost'}\n", "ingest.listen: expected an address")],
    ids=["duration", "unknown", "not-mapping", "address"],
)  # fmt: skip
def test_check_config_errors_exit_2_with_the_key(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    done = cli("check-config", str(path))
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_check_config_of_a_missing_file(tmp_path: Path) -> None:
    done = cli("check-config", str(tmp_path / "absent.yaml"))
    assert done.returncode == 2
    assert "cannot read config file" in done.stderr


def test_run_with_a_bad_flag_exits_2_saying_so() -> None:
    done = cli("run", "--upstream", "not-a-url")
    assert done.returncode == 2
    assert "proxy.upstream (from --upstream): expected an http:// URL" in done.stderr


def test_demo_with_a_bad_app_listen_exits_2() -> None:
    done = cli("demo", "--app-listen", "nowhere")
    assert done.returncode == 2
    assert "config error: --app-listen: expected an address like" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_with_a_bad_env_value_exits_2_saying_so() -> None:
    done = cli("run", env={**os.environ, "SIDECAR_LOG_LEVEL": "chatty"})
    assert done.returncode == 2
    assert "logging.level (from SIDECAR_LOG_LEVEL): expected one of" in done.stderr


# ------------------------------------------ check-config is the effective config (6)


def _env(**values: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    return {**clean, **values}


def test_check_config_applies_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("proxy: {upstream: 'http://127.0.0.1:9000'}\nlogging: {level: debug}\n")
    env = _env(
        SIDECAR_UPSTREAM="http://127.0.0.1:7777",
        SIDECAR_LISTEN="127.0.0.1:8001",
        SIDECAR_ADMIN_LISTEN="127.0.0.1:9465",
        SIDECAR_OTLP_LISTEN="127.0.0.1:4319",
    )
    done = cli("check-config", str(path), env=env)
    assert done.returncode == 0, done.stderr
    effective = yaml.safe_load(done.stdout)
    assert effective["proxy"]["upstream"] == "http://127.0.0.1:7777"  # env over file
    assert effective["proxy"]["listen"] == "127.0.0.1:8001"
    assert effective["admin"]["listen"] == "127.0.0.1:9465"
    assert effective["ingest"]["listen"] == "127.0.0.1:4319"
    assert effective["logging"]["level"] == "debug"  # the file, where no env is set


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [("SIDECAR_UPSTREAM", "ftp://x", "proxy.upstream (from SIDECAR_UPSTREAM): expected an http:// URL"),
     ("SIDECAR_LISTEN", "nowhere", "proxy.listen (from SIDECAR_LISTEN): expected an address"),
     ("SIDECAR_ADMIN_LISTEN", "1.2.3.4:99999", "admin.listen (from SIDECAR_ADMIN_LISTEN): expected"),
     ("SIDECAR_OTLP_LISTEN", "::1:4318", "ingest.listen (from SIDECAR_OTLP_LISTEN): an IPv6"),
     ("SIDECAR_LOG_LEVEL", "chatty", "logging.level (from SIDECAR_LOG_LEVEL): expected one of")],
    ids=["upstream", "listen", "admin", "otlp", "level"],
)  # fmt: skip
def test_check_config_names_the_variable_of_a_bad_value(
    tmp_path: Path, var: str, value: str, message: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("")
    done = cli("check-config", str(path), env=_env(**{var: value}))
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""


def test_a_bad_file_value_is_not_blamed_on_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("proxy: {upstream: 'ftp://x'}\n")
    done = cli("check-config", str(path), env=_env(SIDECAR_LISTEN="127.0.0.1:8001"))
    assert done.returncode == 2
    assert "config error: proxy.upstream: expected" in done.stderr


def _flags(ports: dict[str, int]) -> list[str]:
    return [
        "--listen", f"127.0.0.1:{ports['proxy']}",
        "--admin-listen", f"127.0.0.1:{ports['admin']}",
        "--otlp-listen", f"127.0.0.1:{ports['otlp']}",
    ]  # fmt: skip


def test_run_serves_then_drains_on_sigterm(tmp_path: Path) -> None:
    ports = local_ports("proxy", "admin", "otlp")
    config = tmp_path / "c.yaml"
    config.write_text("shutdown: {drain_delay: 1s, drain_timeout: 2s}\n")
    with run_sidecar(
        ["run", "--config", str(config), *_flags(ports)], admin=f"127.0.0.1:{ports['admin']}"
    ) as car:
        assert http_get(car.url("/healthz"))[0] == 200
        car.proc.send_signal(signal.SIGTERM)
        # readiness drops at once while the process keeps serving for the drain delay
        wait_until(lambda: http_get(car.url("/readyz"))[0] == 503, 5, "/readyz 503")
        assert http_get(car.url("/healthz"))[0] == 200
        assert car.proc.wait(15) == 0
        events = [json.loads(line).get("event") for line in car.logs().splitlines() if line]
    assert events[-1] == "stopped"
    assert {"listening", "ready", "drain_start", "drain_delay"} <= set(events)


def test_second_signal_exits_at_once(tmp_path: Path) -> None:
    ports = local_ports("proxy", "admin", "otlp")
    config = tmp_path / "c.yaml"
    config.write_text("shutdown: {drain_delay: 60s}\nlogging: {format: text}\n")
    with run_sidecar(
        ["run", "--config", str(config), *_flags(ports)], admin=f"127.0.0.1:{ports['admin']}"
    ) as car:
        car.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: http_get(car.url("/readyz"))[0] == 503, 5, "/readyz 503")
        car.proc.send_signal(signal.SIGINT)
        assert car.proc.wait(5) == 128 + signal.SIGINT
        assert "exiting now, cutting 0 in-flight requests" in car.logs()


@pytest.mark.xdist_group("default-ports")
def test_run_starts_on_the_defaults() -> None:
    """No config, no flags: the documented default ports."""
    with run_sidecar(["run"], admin="127.0.0.1:9464") as car:
        status, _headers, body = http_get(car.url("/metrics"))
        assert status == 200
        assert b"sidecar_build_info" in body
        assert car.stop() == 0


# ------------------------------------------------ admin.bearer_token_file (issue 15, 4)


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "cannot read file '{token}': No such file"), ("", "file '{token}' is empty"),
     (" \n\t\n", "file '{token}' is empty")],
    ids=["missing", "empty", "whitespace"],
)  # fmt: skip
@pytest.mark.parametrize("command", ["run", "check-config"])
def test_unusable_bearer_token_file_exits_2_naming_the_key(
    tmp_path: Path, command: str, content: str | None, problem: str
) -> None:
    token = tmp_path / "token"
    if content is not None:
        token.write_text(content)
    config = tmp_path / "c.yaml"
    config.write_text(f"admin: {{bearer_token_file: '{token}'}}\n")
    ports = local_ports("proxy", "admin", "otlp")
    args = ["check-config", str(config)] if command == "check-config" else [
        "run", "--config", str(config), *_flags(ports)
    ]  # fmt: skip
    done = cli(*args)
    problem = problem.format(token=token)
    assert done.returncode == 2, done.stderr
    assert f"config error: admin.bearer_token_file: {problem}" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_a_readable_bearer_token_file_is_accepted(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0k3n\n")
    config = tmp_path / "c.yaml"
    config.write_text(f"admin: {{bearer_token_file: '{token}'}}\n")
    done = cli("check-config", str(config))
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["admin"]["bearer_token_file"] == str(token)
    assert "t0k3n" not in done.stdout


# ------------------------------------------------------- small CLI edges (issue 15, 13)


def test_version_flag_prints_what_version_prints() -> None:
    done = cli("--version")
    assert done.returncode == 0
    assert done.stdout == cli("version").stdout
    assert done.stdout.startswith(f"causality-sidecar {__version__} ")


@pytest.mark.parametrize("command", ["run", "demo"])
def test_log_level_help_lists_every_level(command: str) -> None:
    done = cli(command, "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())  # argparse wraps the help
    assert "debug, info, warning, error or critical, in any case (logging.level)" in text


@pytest.mark.parametrize(("given", "level"), [("INFO", "info"), ("Warning", "warning"),
                                             ("CRITICAL", "critical"), ("debug", "debug")])  # fmt: skip
def test_log_level_is_case_insensitive(tmp_path: Path, given: str, level: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"logging: {{level: {given}}}\n")
    done = cli("check-config", str(path), env=_env())
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["logging"]["level"] == level
    from_env = cli("check-config", "/dev/null", env=_env(SIDECAR_LOG_LEVEL=given))
    assert yaml.safe_load(from_env.stdout)["logging"]["level"] == level


def test_run_takes_an_upper_case_log_level() -> None:
    ports = local_ports("proxy", "admin", "otlp")
    args = ["run", *_flags(ports), "--log-level", "WARNING"]
    with run_sidecar(args, admin=f"127.0.0.1:{ports['admin']}") as car:
        assert car.stop() == 0
    # warning: the info lines of the start are not written
    assert '"event": "listening"' not in car.logs()


def _ingest_warnings(car_logs: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in car_logs.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "ingest_not_loopback"]


def test_a_non_loopback_ingest_listener_is_warned_about() -> None:
    ports = local_ports("proxy", "admin", "otlp")
    args = ["run", *_flags(ports), "--otlp-listen", f"0.0.0.0:{ports['otlp']}"]
    with run_sidecar(args, admin=f"127.0.0.1:{ports['admin']}") as car:
        assert car.stop() == 0
    [warning] = _ingest_warnings(car.logs())
    assert warning["level"] == "warning"
    assert f"ingest.listen is 0.0.0.0:{ports['otlp']}, not a loopback address" in str(
        warning["msg"]
    )
    assert "no authentication" in str(warning["msg"])


def test_a_loopback_ingest_listener_is_not_warned_about() -> None:
    ports = local_ports("proxy", "admin", "otlp")
    with run_sidecar(["run", *_flags(ports)], admin=f"127.0.0.1:{ports['admin']}") as car:
        assert car.stop() == 0
    assert _ingest_warnings(car.logs()) == []
    assert '"event": "ready"' in car.logs()


def test_demo_says_at_once_where_to_look_and_how_to_stop() -> None:
    ports = local_ports("proxy", "admin", "otlp", "app")
    args = ["demo", "--no-traffic", "--app-listen", f"127.0.0.1:{ports['app']}", *_flags(ports)]
    with run_sidecar(args, admin=f"127.0.0.1:{ports['admin']}") as car:
        wait_until(lambda: "Ctrl-C" in car.logs(), 10, "the demo's banner")
        logs = car.logs()
        admin = f"http://127.0.0.1:{ports['admin']}"
        assert "press Ctrl-C to stop" in logs
        assert f"metrics:      {admin}/metrics\n" in logs
        assert f"status page:  {admin}/\n" in logs
        assert f"proxy:        http://127.0.0.1:{ports['proxy']}/users/42\n" in logs
        # the URLs it prints answer
        assert http_get(f"{admin}/metrics")[0] == 200
        assert http_get(f"{admin}/")[0] == 200
        assert http_get(f"http://127.0.0.1:{ports['proxy']}/users/42")[0] == 200
        assert car.stop(signal.SIGINT) == 0
