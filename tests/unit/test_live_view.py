"""The demo's live line: log records print above it on a terminal, one line per interval without one."""

import io
import logging

from stream_dec_lab.demo import DemoResult, Decision, LiveView, Status, VersionRow, markdown

NAN = float("nan")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def status(labelled: int) -> Status:
    return Status(step=1, steps=3, phase="training version 1 (4 s)", produced=2000, labelled=labelled, rate=0.0,
                  lag=2000 - labelled, version=0, rolling_acc=NAN, frozen_acc=NAN, decisions=0)


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("stream_dec.updater", logging.WARNING, __file__, 1, message, None, None)


def test_on_a_terminal_a_log_line_prints_above_the_live_line_which_is_redrawn(monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    screen = Terminal()
    view = LiveView(screen)
    view.show(status(0))
    view.emit(record("update rejected"))
    out = screen.getvalue()
    line = status(0).line()
    assert out.startswith("\r\x1b[K" + line + "\r\x1b[K")  # the live line is cleared before the log line
    assert out.endswith("update rejected\n" + line)  # and drawn again below it
    assert "training version 1 (4 s)" in line and "rolling ACC - (frozen v1 -, -)" in line  # no 'nan'


def test_on_a_narrow_terminal_the_live_line_is_cut_so_it_can_be_redrawn(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    screen = Terminal()
    LiveView(screen).show(status(0))
    assert screen.getvalue() == "\r\x1b[K" + status(0).line()[:39]


def test_without_a_terminal_one_line_per_interval_and_no_carriage_returns():
    log = io.StringIO()
    view = LiveView(log, interval=60.0)
    for labelled in (0, 10, 20):
        view.show(status(labelled))
    view.emit(record("update rejected"))
    view.end()
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and lines[0] == status(0).line() and lines[1].endswith("update rejected")
    assert "\r" not in log.getvalue()


def test_the_summary_shows_the_frozen_baseline_and_every_decision_without_nan():
    rows = [VersionRow(1, "train", 300, 0.5, 0.5, NAN, NAN, NAN, 2.0, 0.03),
            VersionRow(2, "translate", 100, 0.52, 0.49, 0.5, 0.99, 0.05, 0.1, 0.02)]
    decisions = [Decision(2.0, 0, 0, True, 1, "train", NAN, NAN, NAN, ""),
                 Decision(3.0, 300, 1, True, 2, "translate", 0.99, 0.985, 0.05, ""),
                 Decision(4.0, 400, 2, False, None, "translate", 0.97, 0.96, 0.06, "label agreement 0.97 < 0.98")]
    text = markdown(DemoResult(rows, decisions, {}, {}, 400, 0.98, 0.1, interrupted=True))
    assert "| 2 | translate | 100 | 0.5200 | 0.4900 | +0.0300 | 0.5000 |" in text and "nan" not in text
    assert "step 2: update rejected, kept the current version" in text and "label agreement 0.97 < 0.98" in text
    assert "Interrupted: figures so far." in text
