"""events.toml: what it accepts, and refusals that name the line and the field."""
from __future__ import annotations

from pathlib import Path

import pytest

from webhooks.config import read_events_config
from webhooks.errors import InvalidEventsConfig


def write(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "events.toml").write_text(text)
    return root


def test_a_store_without_events_toml_has_no_subscribers(tmp_path: Path) -> None:
    assert read_events_config(tmp_path) is None


def test_subscribers_with_filters_and_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "from-the-environment")
    config = read_events_config(write(tmp_path, """
[sender]
backoff_initial_s = 0.5
backoff_max_s = 4

[[subscribers]]
name = "chat"
url = "https://hooks.example.com/T0/B0"
events = ["deployment_completed", "deployment_failed"]
secret_env = "HOOK_SECRET"

[[subscribers]]
name = "all"
url = "http://127.0.0.1:9/"
secret = "inline"
"""))
    chat, everything = config.subscribers
    assert chat.wants("deployment_completed") and not chat.wants("model_registered")
    assert everything.wants("model_registered") and everything.wants(None)
    assert chat.signing_key() == b"from-the-environment" and everything.signing_key() == b"inline"
    assert [config.sender.backoff_s(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]


@pytest.mark.parametrize(("text", "expected"), [
    ('[[subscribers]]\nname = "a"\nurl = "http://x/"\nevents = ["deployment_complete"]\n',
     "line 4: subscribers.0.events: Value error, unknown event 'deployment_complete' (did you mean "
     "'deployment_completed'?)"),
    ('[[subscribers]]\nname = "a"\nurl = "http://x/"\n\n[[subscribers]]\nname = "b"\nurl = "http://y/"\nsecrett = "s"\n',
     "line 8: subscribers.1.secrett: unknown field (did you mean 'secret'?)"),
    ('[[subscribers]]\nname = "a"\nurl = "not a url"\n', "line 3: subscribers.0.url: "),
    ('[[subscribers]]\nname = "a"\nurl = "http://x/"\nsecret = "s"\nsecret_env = "S"\n',
     "subscribers.0: Value error, give secret or secret_env, not both"),
    ('[[subscribers]]\nname = "a"\nurl = "http://x/"\n[[subscribers]]\nname = "a"\nurl = "http://y/"\n',
     "subscriber names must be unique: a appear"),
    ('[sender]\ntimeout_s = 0\n', "line 2: sender.timeout_s: Input should be greater than 0"),
    ('[[subscribers]\n', "not valid TOML"),
])
def test_a_broken_file_is_refused_naming_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(InvalidEventsConfig) as refused:
        read_events_config(write(tmp_path, text))
    assert str(refused.value).startswith(f"{tmp_path / 'events.toml'}: ")
    assert expected.replace("Value error, ", "") in str(refused.value)


def test_a_secret_variable_that_is_not_set_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(InvalidEventsConfig, match="subscriber 'a': environment variable NOT_SET_ANYWHERE"):
        read_events_config(write(tmp_path, '[[subscribers]]\nname = "a"\nurl = "http://x/"\n'
                                           'secret_env = "NOT_SET_ANYWHERE"\n'))
