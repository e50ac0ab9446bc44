"""The Teams app package: manifest filled from settings, icons of the sizes Teams requires."""

from __future__ import annotations

import json
import struct
import sys
import zipfile
import zlib

import pytest

from bot.channels.teams.package import PackageOptions, build_package
from bot.cli import main
from bot.config import load_settings
from bot.errors import ConfigError
from tests.conftest import REPO_ROOT

APP_ID = "00000000-0000-4000-8000-00000000b07a"
TEAMS_DIR = REPO_ROOT / "deploy" / "teams"
OPTIONS = PackageOptions(website_url="https://intranet.example.com/hr-assistant")


def read_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGBA PNG whose rows all use filter 0, as make_icons.py writes them."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat, size = 8, b"", None
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
            assert body[8:10] == b"\x08\x06", "expected 8-bit RGBA"
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    width, height = size
    raw = zlib.decompress(idat)
    stride = width * 4 + 1
    rows = [raw[i * stride : (i + 1) * stride] for i in range(height)]
    assert all(row[0] == 0 for row in rows)
    return width, height, [row[1:] for row in rows]


@pytest.fixture
def package(tmp_path):
    path = build_package(load_settings(MicrosoftAppId=APP_ID, CHATOPS_COMPANY_NAME="Northwind"), OPTIONS, tmp_path / "app.zip")
    with zipfile.ZipFile(path) as archive:
        yield archive


def test_package_holds_manifest_and_icons(package):
    assert sorted(package.namelist()) == ["color.png", "manifest.json", "outline.png"]


def test_manifest_filled_from_settings(package):
    manifest = json.loads(package.read("manifest.json"))

    assert manifest["id"] == APP_ID
    assert manifest["bots"][0]["botId"] == APP_ID
    assert manifest["developer"]["name"] == "Northwind"
    assert manifest["developer"]["privacyUrl"] == OPTIONS.website_url
    assert "{{" not in package.read("manifest.json").decode()


def test_manifest_declares_scopes_and_commands(package):
    manifest = json.loads(package.read("manifest.json"))
    bot = manifest["bots"][0]

    assert float(manifest["manifestVersion"]) >= 1.17
    assert sorted(bot["scopes"]) == ["groupChat", "personal", "team"]
    assert [command["title"] for command in bot["commandLists"][0]["commands"]] == ["ask", "summarize", "report", "help"]
    assert all(len(command["description"]) <= 128 for command in bot["commandLists"][0]["commands"])
    assert len(manifest["name"]["short"]) <= 30


def test_color_icon_is_192_opaque(package):
    width, height, rows = read_png(package.read("color.png"))

    assert (width, height) == (192, 192)
    assert all(row[3::4] == b"\xff" * width for row in rows)


def test_outline_icon_is_white_on_transparent(package):
    width, height, rows = read_png(package.read("outline.png"))
    alphas = b"".join(row[3::4] for row in rows)

    assert (width, height) == (32, 32)
    assert all(row[i : i + 3] == b"\xff\xff\xff" for row in rows for i in range(0, width * 4, 4))
    assert 0 in alphas
    assert 255 in alphas


def test_committed_icons_match_generator(tmp_path):
    sys.path.insert(0, str(TEAMS_DIR))
    try:
        import make_icons
    finally:
        sys.path.remove(str(TEAMS_DIR))

    make_icons.main(tmp_path)

    for name in ("color.png", "outline.png"):
        assert (tmp_path / name).read_bytes() == (TEAMS_DIR / name).read_bytes(), name


@pytest.mark.parametrize(
    ("settings", "options", "message"),
    [
        ({}, OPTIONS, "MicrosoftAppId"),
        ({"MicrosoftAppId": "hr-helper-bot"}, OPTIONS, "GUID"),
        ({"MicrosoftAppId": APP_ID}, PackageOptions(website_url="http://intranet.example.com"), "https"),
        ({"MicrosoftAppId": APP_ID}, PackageOptions(website_url="https://intranet.example.com", app_version="2"), "1.0.0"),
    ],
)
def test_invalid_input_rejected(tmp_path, monkeypatch, settings, options, message):
    monkeypatch.delenv("MicrosoftAppId", raising=False)

    with pytest.raises(ConfigError, match=message):
        build_package(load_settings(**settings), options, tmp_path / "app.zip")


def test_cli_writes_package(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MicrosoftAppId", APP_ID)
    output = tmp_path / "out" / "teams.zip"

    status = main(["teams", "package", "--website-url", "https://intranet.example.com", "--app-version", "1.2.0", "--output", str(output)])

    assert status == 0
    assert json.loads(zipfile.ZipFile(output).read("manifest.json"))["version"] == "1.2.0"
    assert str(output) in capsys.readouterr().out
