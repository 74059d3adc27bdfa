"""Mail templates: defaults, overrides, locales, GoTrue-style variables, delivery modes."""

from dataclasses import replace

from authgres.mailer import Templates
from authgres.settings import Settings

BASE = Settings.from_env(
    {
        "DATABASE_URL": "postgresql:///x",
        "AUTHGRES_JWT_SECRET": "s" * 32,
        "AUTHGRES_API_EXTERNAL_URL": "https://auth.example.com/auth/v1",
    }
)
PAYLOAD = {
    "token": "123456",
    "token_hash": "abc",
    "verify_type": "magiclink",
    "email": "a@example.com",
    "redirect_to": "https://app.example.com/?a=1&b=2",
    "site_url": "https://app.example.com",
    "data": {},
}


def test_default_template_has_code_and_link_and_escapes_html_only():
    email = Templates(BASE).render("magiclink", "a@example.com", PAYLOAD)
    assert email.subject == "Your sign-in code"
    assert "Your code: 123456" in email.text
    link = "https://auth.example.com/auth/v1/verify?token=abc&type=magiclink&redirect_to=https%3A%2F%2Fapp.example.com"
    assert link in email.text
    assert "token=abc&amp;type=magiclink" in email.html


def test_delivery_modes():
    code_only = Templates(replace(BASE, mailer_delivery=(("*", "both"), ("magiclink", "code"))))
    email = code_only.render("magiclink", "a@example.com", PAYLOAD)
    assert "123456" in email.text and "/verify" not in email.text
    link_only = Templates(replace(BASE, mailer_delivery=(("*", "link"),))).render("recovery", "a@example.com", PAYLOAD)
    assert "123456" not in link_only.text and "/verify" in link_only.text


def test_override_folder_locale_and_gotrue_variables(tmp_path):
    (tmp_path / "magiclink.fr.jinja").write_text(
        "Votre code\n----- text -----\nCode : {{ .Token }} pour {{ .Email }}\n----- html -----\n<p>{{ .Token }}</p>\n"
    )
    templates = Templates(replace(BASE, mailer_templates=str(tmp_path)))
    french = templates.render("magiclink", "a@example.com", {**PAYLOAD, "data": {"locale": "fr"}})
    assert french.subject == "Votre code"
    assert french.text.strip() == "Code : 123456 pour a@example.com"
    other = templates.render("magiclink", "a@example.com", {**PAYLOAD, "data": {"locale": "de"}})
    assert other.subject == "Your sign-in code"
