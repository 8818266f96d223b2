"""ENV=production: no process starts with a missing or development secret, and no
process prints a secret's value."""

from __future__ import annotations

import io

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from zapstream.cli import SECRETS_USED, cli, secrets_of_up
from zapstream.settings import DEV_APP_SECRET, DEV_HELPDESK_SECRET, Settings
from zapstream.supervisor.supervisor import Supervisor

GOOD = {
    "WHATSAPP_APP_SECRET": "real-app-secret-value",
    "WHATSAPP_VERIFY_TOKEN": "real-verify-token-value",
    "WHATSAPP_ACCESS_TOKEN": "real-access-token-value",
    "ADMIN_TOKEN": "real-admin-token-value",
}
ALL = (
    "WHATSAPP_APP_SECRET",
    "WHATSAPP_VERIFY_TOKEN",
    "WHATSAPP_ACCESS_TOKEN",
    "ADMIN_TOKEN",
    "HELPDESK_SECRET",
)


def production(**fields: object) -> Settings:
    return Settings(env="production", **fields)  # type: ignore[arg-type]


def good(**fields: object) -> Settings:
    secrets = {k.lower(): SecretStr(v) for k, v in GOOD.items()}
    return production(**{**secrets, **fields})


def test_development_never_complains() -> None:
    assert Settings().production_problems(ALL) == []


def test_production_names_each_default_or_missing_secret_and_never_its_value() -> None:
    problems = production().production_problems(ALL)
    assert problems == [
        "WHATSAPP_APP_SECRET is still the development default",
        "WHATSAPP_VERIFY_TOKEN is still the development default",
        "WHATSAPP_ACCESS_TOKEN is still the development default",
        "ADMIN_TOKEN is not set",
    ]  # HELPDESK_SECRET: no helpdesk URL, so not used
    assert DEV_APP_SECRET not in " ".join(problems)


def test_the_helpdesk_secret_counts_once_a_helpdesk_url_is_set() -> None:
    with_url = good(helpdesk_webhook_url="https://helpdesk.example/hook")
    assert with_url.production_problems(ALL) == ["HELPDESK_SECRET is still the development default"]
    empty = good(helpdesk_webhook_url="https://h.example", helpdesk_secret=SecretStr(" "))
    assert empty.production_problems(ALL) == ["HELPDESK_SECRET is not set"]
    real = good(helpdesk_webhook_url="https://h.example", helpdesk_secret=SecretStr("x" * 32))
    assert real.production_problems(ALL) == []


def test_each_process_checks_only_the_secrets_it_uses() -> None:
    s = production(admin_token=SecretStr("a-real-admin-token"))
    assert s.production_problems(SECRETS_USED["sink"]) == []
    assert s.production_problems(SECRETS_USED["worker"]) == [
        "WHATSAPP_ACCESS_TOKEN is still the development default"
    ]
    assert set(secrets_of_up(s)) >= set(SECRETS_USED["api"]) | set(SECRETS_USED["worker"])


@pytest.mark.parametrize("command", ["api", "worker", "sandbox", "up"])
def test_a_command_refuses_to_start_in_production_with_dev_secrets(command: str) -> None:
    env = {"ENV": "production", "WHATSAPP_APP_SECRET": DEV_APP_SECRET, "ADMIN_TOKEN": ""}
    result = CliRunner().invoke(cli, [command], env=env)
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "ENV=production" in line
    assert f"zapstream {command} refuses to start" in line
    assert DEV_APP_SECRET not in line
    assert "is still the development default" in line


def test_the_banner_names_dev_secrets_but_prints_no_secret_value() -> None:
    out = io.StringIO()
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:9092",
        helpdesk_webhook_url="http://127.0.0.1:9/hook",
        admin_token=SecretStr("admin-token-value"),
    )
    Supervisor(settings, out=out).banner("127.0.0.1:9092")
    text = out.getvalue()
    assert "WHATSAPP_APP_SECRET" in text
    assert "HELPDESK_SECRET" in text
    for value in (
        DEV_APP_SECRET,
        "dev-verify-token",
        "dev-access-token",
        DEV_HELPDESK_SECRET,
        "admin-token-value",
    ):
        assert value not in text
