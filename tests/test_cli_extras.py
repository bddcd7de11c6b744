"""A command whose optional extra is missing fails with one line and exit 2, not a traceback."""

import pytest
import typer

from soraplan.cli.common import missing_extra_message, user_errors


def test_message_names_the_extra():
    assert "soraplan[train]" in missing_extra_message("megatron.core")
    assert "soraplan[report]" in missing_extra_message("plotly")
    assert missing_extra_message("yaml") is None


def test_user_errors_turns_a_missing_extra_into_exit_2(capsys):
    @user_errors
    def needs_plotly():
        raise ModuleNotFoundError("No module named 'plotly'", name="plotly")

    with pytest.raises(typer.Exit) as e:
        needs_plotly()
    assert e.value.exit_code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'soraplan[report]'" in err


def test_other_missing_modules_still_raise():
    @user_errors
    def broken():
        raise ModuleNotFoundError("No module named 'nonexistent_pkg'", name="nonexistent_pkg")

    with pytest.raises(ModuleNotFoundError):
        broken()
