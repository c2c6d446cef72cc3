"""The configuration file: every key, every kind of mistake, one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from xrelay.core.config import ConfigError, load_config, parse_config, with_overrides

ROOT = Path(__file__).resolve().parent.parent

MINIMAL = """
[upstream]
url = "http://provider.example:8080"
username = "pu"
password = "pp"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "xrelay.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={} if environ is None else environ)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "xrelay.toml") + ": ")
    return message


def test_minimal_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), environ={})
    assert config.upstream.origin == "http://provider.example:8080"
    assert config.server.listen.startswith("tcp:8080")
    assert config.server.public_url is None
    assert config.ingest.interval == 21600
    assert config.ingest.data_dir == Path("/var/lib/xrelay")
    assert config.users == ()
    assert config.admin is None


def test_the_example_file_is_valid_and_documents_every_key() -> None:
    example = ROOT / "etc" / "xrelay.toml.example"
    config = load_config(example, environ={})
    text = example.read_text()
    for section in ("upstream", "server", "ingest", "relay", "admin", "log"):
        assert f"[{section}]" in text
    assert "[[users]]" in text
    from dataclasses import fields

    from xrelay.core import config as config_module

    for record in (config_module.UpstreamConfig, config_module.ServerConfig,
                   config_module.IngestConfig, config_module.UserConfig, config_module.AdminConfig,
                   config_module.RelayConfig, config_module.LogConfig,
                   config_module.HdhrDevice):
        for f in fields(record):
            assert f"{f.name} =" in text, f"{record.__name__}.{f.name} is not documented"
    assert len(config.users) >= 1


def test_full_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL + """
max_connections = 3
[server]
listen = "tcp:9000:interface=127.0.0.1"
public_url = "http://tv.lan:9000/"
[ingest]
interval = 3600
data_dir = "/srv/xrelay"
timeout = 600
[[users]]
username = "alice"
password = "a"
max_connections = 2
exp_date = 1900000000
[[users]]
username = "bob"
password = "b"
enabled = false
[admin]
username = "root"
password = "secret"
[relay]
linger = 2
"""), environ={})
    assert config.upstream.max_connections == 3
    assert config.server.public_url == "http://tv.lan:9000"
    assert config.ingest.interval == 3600.0
    assert [u.username for u in config.users] == ["alice", "bob"]
    assert config.users[0].exp_date == 1900000000
    assert config.users[1].enabled is False
    assert config.admin is not None and config.admin.username == "root"
    assert config.relay.linger == 2.0


def test_environment_overrides_upstream(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[upstream]\n"), environ={
        "XRELAY_UPSTREAM_URL": "https://p.example", "XRELAY_UPSTREAM_USERNAME": "eu",
        "XRELAY_UPSTREAM_PASSWORD": "ep"})
    assert (config.upstream.url, config.upstream.username, config.upstream.password) == (
        "https://p.example", "eu", "ep")
    config = load_config(write(tmp_path, MINIMAL), environ={"XRELAY_UPSTREAM_PASSWORD": "other"})
    assert config.upstream.password == "other"
    assert config.upstream.username == "pu"


@pytest.mark.parametrize("text, expected", [
    ("[upstream]\nurl='http://p'\nusername='u'\n", "upstream.password: missing"),
    (MINIMAL + "color = 1\n", "upstream.color: unknown key"),
    (MINIMAL + "[server]\nlisten = 8080\n", "server.listen: expected a string, got an integer"),
    (MINIMAL + "[server]\nlisten = 'tcp:notaport'\n", "server.listen: bad endpoint string"),
    (MINIMAL + "[server]\nlisten = 'carrier-pigeon:1'\n", "server.listen: bad endpoint string"),
    (MINIMAL + "[ingest]\ninterval = 'often'\n", "ingest.interval: expected a number, got a string"),
    (MINIMAL + "[ingest]\ninterval = -5\n", "ingest.interval: must be > 0"),
    (MINIMAL + "[[users]]\nusername='a'\npassword='x'\n[[users]]\nusername='a'\npassword='y'\n",
     "users[1].username: duplicate user 'a'"),
    (MINIMAL + "[[users]]\nusername='a'\n", "users[0].password: missing"),
    (MINIMAL + "[[users]]\nusername='a'\npassword='x'\nenabled='yes'\n",
     "users[0].enabled: expected a boolean, got a string"),
    (MINIMAL + "[[users]]\nusername='a'\npassword='x'\nmax_connections=true\n",
     "users[0].max_connections: expected an integer, got a boolean"),
    (MINIMAL + "[[users]]\nusername='pu'\npassword='pp'\n",
     "users[0].password: must differ from the provider's credentials"),
    ("[upstream]\nurl='ftp://p'\nusername='u'\npassword='p'\n", "upstream.url: must look like http://host[:port]"),
    (MINIMAL + "[bogus]\n", "(top level).bogus: unknown key"),
    (MINIMAL + "[log]\nformat='xml'\n", "log.format: must be"),
    (MINIMAL + "[admin]\nusername='x'\n", "admin.password: missing"),
    ("[upstream\n", "not valid TOML"),
])
def test_errors_name_file_key_and_problem(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_bad_url_error_does_not_echo_credentials(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[upstream]\nurl='http://user:hunter2@p.example/x?y=1'\n"
                                 "username='u'\npassword='p'\n")
    assert "hunter2" not in message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, environ={})


def test_listen_override_is_checked(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), environ={})
    assert with_overrides(config, listen="tcp:0").server.listen == "tcp:0"
    with pytest.raises(ConfigError, match="--listen"):
        with_overrides(config, listen="nonsense:1")


def test_masked_hides_every_secret(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL + """
[[users]]
username = "alice"
password = "alicepw"
[admin]
username = "root"
password = "rootpw"
"""), environ={})
    text = repr(config.masked()) + repr(config)
    for secret in ("provider.example", "pp", "alicepw", "rootpw"):
        assert secret not in text
    assert "alice" in text


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for key in ("XRELAY_UPSTREAM_URL", "XRELAY_UPSTREAM_USERNAME", "XRELAY_UPSTREAM_PASSWORD"):
        env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "xrelay.cli", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_check_config_command(tmp_path: Path) -> None:
    good = run_cli("check-config", "--config", str(write(tmp_path, MINIMAL)))
    assert good.returncode == 0, good.stderr
    assert '"password": "***"' in good.stdout
    assert "provider.example" not in good.stdout
    bad = run_cli("check-config", "--config", str(write(tmp_path, MINIMAL + "oops = 1\n")))
    assert bad.returncode != 0
    assert bad.stderr.count("\n") == 1 and "upstream.oops: unknown key" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_twistd_config_error_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    path = write(tmp_path, MINIMAL + "[server]\nlisten = 'bogus'\n")
    proc = subprocess.run([sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "xrelay", "--config", str(path)],
                          capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert proc.returncode != 0
    assert "server.listen: bad endpoint string" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
