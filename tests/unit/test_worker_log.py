"""What a test reports when a worker it started is gone: the cause, not only the shutdown."""

from pathlib import Path

from cdcapp.tools.worker_process import first_error


def test_the_first_error_and_its_traceback_are_found_before_the_shutdown_lines(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text("[t] [1] [INFO] [^Worker]: Starting...\n"
                   "[t] [1] [ERROR] a batch of 3 events (x[0]@5..7) could not be handled; the worker stops\n"
                   "Traceback (most recent call last):\n"
                   "KeyError: 4\n"
                   "[t] [1] [INFO] [^--Consumer]: Stopping...\n"
                   "[t] [1] [ERROR] [^--Consumer]: Error while stopping child\n")
    first = first_error(log, lines=3)
    assert first.splitlines() == ["[t] [1] [ERROR] a batch of 3 events (x[0]@5..7) could not be handled; "
                                  "the worker stops", "Traceback (most recent call last):", "KeyError: 4"]


def test_a_clean_or_missing_log_has_no_error(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text("[t] [1] [INFO] [^Worker]: Starting...\n[t] [1] [WARNING] slow\n")
    assert first_error(log) is None
    assert first_error(tmp_path / "absent.log") is None
