import pytest

from dockwarden.config import ConfigError, Settings, load_policy
from dockwarden.model import Mode


def test_defaults_are_the_disinto_numbers():
    p = load_policy(None)
    assert p.thresholds.memory_crisis_available_bytes == 500 * 1024 * 1024
    assert p.thresholds.swap_crisis_used_bytes == 3 * 1024 ** 3
    assert p.thresholds.disk_critical_percent == 80
    assert p.backoff.initial_delay_s == 1 and p.backoff.max_delay_s == 300 and p.backoff.stable_reset_s == 600
    assert p.restart_budget.max_restarts == 5 and p.restart_budget.window_s == 600
    assert p.guardrails.mode == Mode.AUTO and p.guardrails.unmanaged_mode == Mode.RECOMMEND


@pytest.mark.parametrize("text,needle", [
    ("[backoff]\ninitial_delay_s = -1\n", "backoff.initial_delay_s"),
    ("[thresholds]\ndisk_critical_percent = 120\n", "thresholds.disk_critical_percent"),
    ("[guardrails]\nmode = 'yolo'\n", "guardrails.mode"),
    ("[backoff]\ninital_delay_s = 1\n", "backoff.inital_delay_s"),
    ("[thresholds]\ndisk_warn_percent = 90\ndisk_critical_percent = 80\n", "disk_warn_percent"),
    ("[[guardrails.maintenance]]\nstart = '25:00'\nend = '01:00'\n", "guardrails.maintenance[0].start"),
    ("not toml = = 1", "not valid TOML"),
])
def test_policy_errors_name_file_and_field(tmp_path, text, needle):
    f = tmp_path / "policy.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_policy(f)
    assert str(f) in str(ei.value) and needle in str(ei.value)


def test_unknown_tables_are_kept_for_later_features(tmp_path):
    f = tmp_path / "policy.toml"
    f.write_text("[someday]\ninterval_s = 300\n")
    assert load_policy(f).extra == {"someday": {"interval_s": 300}}


def test_settings_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKWARDEN_STATE_DIR", str(tmp_path / "env"))
    assert Settings.resolve().state_dir == tmp_path / "env"
    assert Settings.resolve(state_dir=tmp_path / "flag").state_dir == tmp_path / "flag"
    monkeypatch.delenv("DOCKWARDEN_STATE_DIR")
    monkeypatch.setenv("DOCKWARDEN_INVENTORY", "/x/inv")
    assert str(Settings.resolve().inventory) == "/x/inv"
