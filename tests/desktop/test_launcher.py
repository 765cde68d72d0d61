"""`transfer-studio`: no arguments opens the app, a command runs headless without loading the GUI."""

import subprocess
import sys

import pytest

from desktop import launcher


def test_no_arguments_and_the_smoke_flag_open_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    import desktop.app

    calls = []
    monkeypatch.setattr(desktop.app, "main", lambda argv: calls.append(argv) or 0)
    assert launcher.main([]) == 0 and launcher.main(["--smoke-seconds", "1"]) == 0
    assert calls == [[], ["--smoke-seconds", "1"]]


def test_a_command_runs_the_cli_without_qt() -> None:
    code = ("import sys\nfrom desktop.launcher import main\ncode = main(['backbones'])\n"
            "print('QT' if any(m.startswith('PySide6') for m in sys.modules) else 'NO-QT', code)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert "efficientnet_lite0 (default)" in result.stdout
    assert result.stdout.split()[-2:] == ["NO-QT", "0"]
