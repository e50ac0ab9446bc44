"""Teams settings and the botbuilder configuration built from them, checked without any network."""

from __future__ import annotations

import pytest
from botbuilder.integration.aiohttp import ConfigurationServiceClientCredentialFactory
from botframework.connector.auth import (
    AuthenticationConstants,
    ManagedIdentityAppCredentials,
    MicrosoftAppCredentials,
)

from bot.channels.teams.adapter import ReusedCredentialsFactory, bot_framework_configuration, create_adapter
from bot.config import TEAMS_DEFAULT_OPENID_METADATA_URL, load_settings
from bot.errors import ConfigError

APP_ID = "00000000-0000-4000-8000-00000000b07a"
TENANT_ID = "9c4f7c1e-0000-4000-8000-0000000000aa"


def test_teams_disabled_without_app_id(monkeypatch):
    monkeypatch.delenv("MicrosoftAppId", raising=False)

    assert not load_settings().teams_enabled


def test_bot_framework_variable_names(monkeypatch):
    monkeypatch.setenv("MicrosoftAppId", APP_ID)
    monkeypatch.setenv("MicrosoftAppPassword", "app-secret-value")
    monkeypatch.setenv("MicrosoftAppTenantId", TENANT_ID)

    settings = load_settings()

    assert settings.teams_enabled
    assert settings.teams_app_type == "SingleTenant"
    assert settings.teams_app_tenant_id == TENANT_ID
    settings.require_teams()


@pytest.mark.parametrize(("given", "stored"), [("singletenant", "SingleTenant"), ("MULTITENANT", "MultiTenant"), ("UserAssignedMsi", "UserAssignedMSI")])
def test_app_type_ignores_case(given, stored):
    assert load_settings(MicrosoftAppType=given).teams_app_type == stored


def test_unknown_app_type_names_variable():
    with pytest.raises(ConfigError, match="MicrosoftAppType"):
        load_settings(MicrosoftAppType="Guest")


@pytest.mark.parametrize(
    ("app_type", "given", "missing"),
    [
        ("SingleTenant", {"MicrosoftAppPassword": "secret"}, "MicrosoftAppTenantId"),
        ("SingleTenant", {"MicrosoftAppTenantId": TENANT_ID}, "MicrosoftAppPassword"),
        ("MultiTenant", {}, "MicrosoftAppPassword"),
        ("UserAssignedMSI", {}, "MicrosoftAppTenantId"),
    ],
)
def test_missing_credential_named(app_type, given, missing):
    settings = load_settings(MicrosoftAppId=APP_ID, MicrosoftAppType=app_type, **given)

    with pytest.raises(ConfigError, match=missing):
        settings.require_teams()


def test_metadata_default_is_botbuilders():
    assert TEAMS_DEFAULT_OPENID_METADATA_URL == AuthenticationConstants.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL


@pytest.mark.parametrize("url", ["http://login.example.com/openid", "ftp://127.0.0.1/openid"])
def test_metadata_url_must_be_https(url):
    with pytest.raises(ConfigError, match="CHATOPS_TEAMS_OPENID_METADATA_URL"):
        load_settings(CHATOPS_TEAMS_OPENID_METADATA_URL=url)


def test_local_metadata_url_may_be_http():
    url = "http://127.0.0.1:9000/openid"

    assert load_settings(CHATOPS_TEAMS_OPENID_METADATA_URL=url).teams_openid_metadata_url == url


def test_configuration_uses_public_cloud_values():
    config = bot_framework_configuration(load_settings(MicrosoftAppId=APP_ID))

    assert config.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER == AuthenticationConstants.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER
    assert config.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL == AuthenticationConstants.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL
    assert config.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE == AuthenticationConstants.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE


async def credentials_for(**settings_values):
    config = bot_framework_configuration(load_settings(MicrosoftAppId=APP_ID, **settings_values))
    factory = ConfigurationServiceClientCredentialFactory(config)
    return await factory.create_credentials(
        APP_ID, config.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE, config.TO_CHANNEL_FROM_BOT_LOGIN_URL, config.VALIDATE_AUTHORITY
    )


async def test_single_tenant_tokens_come_from_own_tenant():
    credentials = await credentials_for(MicrosoftAppPassword="secret", MicrosoftAppTenantId=TENANT_ID)

    assert isinstance(credentials, MicrosoftAppCredentials)
    assert credentials.oauth_endpoint == f"https://login.microsoftonline.com/{TENANT_ID}"
    assert credentials.oauth_scope == "https://api.botframework.com"


async def test_multi_tenant_tokens_come_from_botframework_tenant():
    credentials = await credentials_for(MicrosoftAppType="MultiTenant", MicrosoftAppPassword="secret")

    assert credentials.oauth_endpoint == "https://login.microsoftonline.com/botframework.com"


async def test_managed_identity_credentials():
    credentials = await credentials_for(MicrosoftAppType="UserAssignedMSI", MicrosoftAppTenantId=TENANT_ID)

    assert isinstance(credentials, ManagedIdentityAppCredentials)
    assert credentials.oauth_scope == "https://api.botframework.com"


def test_adapter_requires_credentials():
    with pytest.raises(ConfigError, match="MicrosoftAppPassword"):
        create_adapter(load_settings(MicrosoftAppId=APP_ID, MicrosoftAppTenantId=TENANT_ID))


async def test_credentials_reused_across_posts():
    config = bot_framework_configuration(
        load_settings(MicrosoftAppId=APP_ID, MicrosoftAppPassword="secret", MicrosoftAppTenantId=TENANT_ID)
    )
    factory = ReusedCredentialsFactory(ConfigurationServiceClientCredentialFactory(config))
    arguments = (APP_ID, config.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE, config.TO_CHANNEL_FROM_BOT_LOGIN_URL, True)

    first = await factory.create_credentials(*arguments)
    second = await factory.create_credentials(*arguments)

    assert first is second
    assert isinstance(first, MicrosoftAppCredentials)
