import logging

from stream_dec.stream.observability import StatsLine


def emitted(caplog, stats: StatsLine, lag=None, version=1) -> dict:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="stream_dec.labeler"):
        stats.emit(lag, version)
    (record,) = [r for r in caplog.records if r.getMessage() == "stats"]
    return record.fields


def test_stats_line_gives_time_in_the_labeler_and_the_inputs_age_apart(caplog):
    stats = StatsLine(interval_s=0)
    for labels, dead, seconds, age in [(10, 1, 0.002, 0.050), (5, 0, 0.004, None), (7, 0, 0.006, 0.150)]:
        stats.add(labels, dead, seconds, age)
    fields = emitted(caplog, stats, lag=3, version=2)
    assert (fields["labels"], fields["dead_letters"], fields["batches"]) == (22, 1, 3)
    assert fields["batch_ms_p50"] == 4.0 and fields["input_age_ms_p50"] == 100.0  # batches without an age left out
    assert fields["input_age_ms_p99"] == 149.0 and (fields["lag"], fields["version"]) == (3, 2)
    quiet = emitted(caplog, stats)  # the next interval: no batch
    assert quiet["batches"] == 0 and quiet["batch_ms_p50"] is None and quiet["input_age_ms_p99"] is None
    assert quiet["dead_letters_total"] == 1
