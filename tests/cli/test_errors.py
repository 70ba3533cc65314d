"""User errors are one line and exit 2; bugs keep their traceback; ``--debug`` shows every traceback."""

import argparse

import pytest
from helpers import moalign

from moalign.cli import data_cmd
from moalign.cli import main as cli


def test_a_user_error_is_one_line_and_debug_shows_its_traceback(tmp_path):
    out = moalign("train", "dpo", "--task", "synthetic", "--max_steps", "0", "--output_dir", tmp_path / "run")
    assert out.returncode == 2
    assert out.stderr.strip() == "moalign: error: max_steps must be at least 1 (or unset to train num_epochs), got 0"
    debug = moalign("--debug", "train", "dpo", "--task", "synthetic", "--max_steps", "0")
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr


def test_an_output_dir_that_is_a_file_is_a_user_error(tmp_path, tiny_model_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = moalign("train", "dpo", "--model", tiny_model_path, "--task", "synthetic", f"--output_dir={blocker}")
    assert out.returncode == 2 and "exists and is not a folder" in out.stderr and "Traceback" not in out.stderr


def run_handler(monkeypatch, error, *flags):
    """``moalign [FLAGS] data check x.jsonl`` with the command's handler raising ``error``."""
    def handler(args: argparse.Namespace) -> int:
        raise error

    monkeypatch.setattr(data_cmd, "run_check", handler)  # the parser is built per call and picks it up
    return cli.main([*flags, "data", "check", "x.jsonl"])


def test_an_os_error_on_a_user_path_is_a_user_error_and_a_bug_keeps_its_traceback(monkeypatch, capsys):
    assert run_handler(monkeypatch, FileNotFoundError(2, "No such file or directory", "x.jsonl")) == 2
    assert capsys.readouterr().err.strip() == "moalign: error: No such file or directory: x.jsonl"
    with pytest.raises(RuntimeError, match="a bug"):
        run_handler(monkeypatch, RuntimeError("a bug"))
    with pytest.raises(ZeroDivisionError):
        run_handler(monkeypatch, ZeroDivisionError())
    with pytest.raises(FileNotFoundError):
        run_handler(monkeypatch, FileNotFoundError(2, "No such file or directory", "x.jsonl"), "--debug")


def test_an_eval_out_that_is_a_file_fails_before_any_model_answers(tmp_path):
    blocker = tmp_path / "report"
    blocker.write_text("x")
    out = moalign("eval", "front", "--methods", "base", "--objectives", "informative,warm", "--out", blocker)
    assert out.returncode == 2 and out.stderr.strip() == f"moalign: error: exists and is not a folder: {blocker}"
