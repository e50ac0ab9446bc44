"""Building the Teams app package: the zip that a Teams admin uploads.

The package holds ``manifest.json``, ``color.png`` (192x192) and ``outline.png``
(32x32, white on transparent) at its root. The manifest template in
``deploy/teams`` names the values that differ per company as ``{{Name}}``
placeholders, which this module fills in and checks.
"""

from __future__ import annotations

import json
import re
import struct
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bot.config import Settings
from bot.errors import ConfigError

TEMPLATE_DIR = Path(__file__).resolve().parents[3] / "deploy" / "teams"
ICON_SIZES = {"color": (192, 192), "outline": (32, 32)}
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_VERSION = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}$")


@dataclass(frozen=True)
class PackageOptions:
    """Values for the manifest that settings do not hold."""

    website_url: str
    privacy_url: str | None = None
    terms_of_use_url: str | None = None
    app_version: str = "1.0.0"
    developer_name: str | None = None


def build_package(settings: Settings, options: PackageOptions, output: Path, *, template_dir: Path = TEMPLATE_DIR) -> Path:
    """Write the app package to ``output`` and return its path; raise ConfigError naming what is wrong."""
    values = _placeholder_values(settings, options)
    manifest_text = _fill(template_dir / "manifest.json", values)
    try:
        manifest = json.loads(manifest_text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{template_dir / 'manifest.json'} is not valid JSON after filling it in: {exc}") from None

    icons = {}
    for kind, expected in ICON_SIZES.items():
        path = template_dir / manifest["icons"][kind]
        _check_icon(path, expected)
        icons[path.name] = path.read_bytes()

    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", manifest_text)
        for name, data in icons.items():
            archive.writestr(name, data)
    return output


def _placeholder_values(settings: Settings, options: PackageOptions) -> dict[str, str]:
    app_id = settings.teams_app_id
    if not app_id:
        raise ConfigError("MicrosoftAppId not set: copy the Microsoft App ID from the Azure Bot resource's Configuration page")
    try:
        uuid.UUID(app_id)
    except ValueError:
        raise ConfigError(f"MicrosoftAppId {app_id!r} is not a GUID; Teams needs the bot's Microsoft App ID") from None
    if not _VERSION.match(options.app_version):
        raise ConfigError(f"app version {options.app_version!r} must look like 1.0.0 (Teams needs a higher one on each upload)")
    urls = {
        "WebsiteUrl": options.website_url,
        "PrivacyUrl": options.privacy_url or options.website_url,
        "TermsOfUseUrl": options.terms_of_use_url or options.website_url,
    }
    for name, url in urls.items():
        parsed = urlsplit(url)
        if parsed.scheme != "https" or not parsed.hostname:
            raise ConfigError(f"{name} {url!r} must be an https URL; Teams rejects other links in a manifest")
    return {
        "MicrosoftAppId": app_id,
        "AppVersion": options.app_version,
        "CompanyName": options.developer_name or settings.company_name,
        **urls,
    }


def _fill(template: Path, values: dict[str, str]) -> str:
    text = template.read_text(encoding="utf-8")

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise ConfigError(f"{template} uses the unknown placeholder {{{{{name}}}}}")
        # The placeholders sit inside JSON strings, so values are escaped as JSON.
        return json.dumps(values[name])[1:-1]

    return _PLACEHOLDER.sub(replace, text)


def _check_icon(path: Path, expected: tuple[int, int]) -> None:
    if not path.is_file():
        raise ConfigError(f"icon {path} not found; run python deploy/teams/make_icons.py to draw it")
    header = path.read_bytes()[:24]
    if header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR":
        raise ConfigError(f"icon {path} is not a PNG file")
    size = struct.unpack(">II", header[16:24])
    if size != expected:
        raise ConfigError(f"icon {path} is {size[0]}x{size[1]} pixels; Teams needs {expected[0]}x{expected[1]}")
