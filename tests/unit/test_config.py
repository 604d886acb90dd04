import dataclasses
import re
import tomllib
import typing

import pytest

from stream_dec.config import Config, config_from_mapping, load_config
from stream_dec.errors import ConfigError
from tests.conftest import ROOT


def test_default_toml_matches_the_dataclass_defaults():
    assert load_config(ROOT / "config" / "default.toml") == Config()


def test_default_toml_documents_every_key():
    with (ROOT / "config" / "default.toml").open("rb") as fh:
        data = tomllib.load(fh)
    def check(table, cls):
        hints = typing.get_type_hints(cls)
        assert set(table) == {f.name for f in dataclasses.fields(cls)}
        for key, value in table.items():
            if dataclasses.is_dataclass(hints[key]):
                check(value, hints[key])

    check(data, Config)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"model": {"latnt_dim": 3}}, "unknown key 'model.latnt_dim'"),
        ({"modle": {}}, "unknown key 'modle'"),
        ({"model": {"latent_dim": "32"}}, "'model.latent_dim' must be an integer, got '32'"),
        ({"model": {"latent_dim": True}}, "'model.latent_dim' must be an integer"),
        ({"model": {"hidden_dims": 256}}, "'model.hidden_dims' must be a list"),
        ({"model": {"clusters": 1}}, "'model.clusters' must be >= 2, got 1"),
        ({"train": {"noise": -0.1}}, r"'train.noise' must be in \[0, 1\)"),
        ({"train": {"device": "tpu"}}, "'train.device' must be one of 'auto', 'cpu', 'cuda'"),
        ({"train": 3}, "'train' must be a table"),
    ],
)
def test_invalid_values_name_source_and_key(data, message):
    with pytest.raises(ConfigError, match=message) as info:
        config_from_mapping(data, source="my.toml")
    assert str(info.value).startswith("my.toml: ")


def test_integers_are_accepted_for_floats():
    assert config_from_mapping({"train": {"lr": 1}}, source="x").train.lr == 1.0


def test_load_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.toml")
    (tmp_path / "bad.toml").write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")


@pytest.mark.parametrize("path", sorted((ROOT / "config").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_file_is_valid(path):
    load_config(path)


def test_environment_overrides_any_key_with_the_fields_type(tmp_path):
    (tmp_path / "c.toml").write_text('[labeler]\nmax_batch = 10\n')
    config = load_config(tmp_path / "c.toml", environ={
        "STREAM_DEC_LABELER__MAX_BATCH": "4096", "STREAM_DEC_REDIS__PASSWORD": "12345",
        "STREAM_DEC_KAFKA__SASL_PASSWORD": "pw", "STREAM_DEC_KAFKA__CONSUMER__SESSION_TIMEOUT_MS": "7000",
        "STREAM_DEC_MODEL__HIDDEN_DIMS": "[128, 64]", "OTHER": "ignored",
    })
    assert config.labeler.max_batch == 4096
    assert config.redis.password == "12345"  # a str field stays a string
    assert config.kafka["sasl.password"] == "pw" and config.kafka["consumer"]["session.timeout.ms"] == "7000"
    assert config.model.hidden_dims == (128, 64)


def test_bad_environment_override_names_the_key():
    with pytest.raises(ConfigError, match="'labeler.max_batch' must be an integer, got 'many'"):
        load_config(None, environ={"STREAM_DEC_LABELER__MAX_BATCH": "many"})
    with pytest.raises(ConfigError, match="unknown key 'labeler.max_btch'"):
        load_config(None, environ={"STREAM_DEC_LABELER__MAX_BTCH": "1"})


def test_secrets_are_masked_in_the_effective_config():
    from stream_dec.config import masked

    config = load_config(None, environ={"STREAM_DEC_REDIS__PASSWORD": "hunter2",
                                        "STREAM_DEC_KAFKA__SASL_PASSWORD": "pw",
                                        "STREAM_DEC_REDIS__URL": "redis://:hunter2@cache:6379/0"})
    shown = masked(config)
    assert shown["redis"]["password"] == "***" and shown["kafka"]["sasl.password"] == "***"
    assert shown["redis"]["url"] == "redis://***@cache:6379/0" and "hunter2" not in str(shown)


def test_client_settings_layer_defaults_kafka_and_role_tables_and_forced_rules():
    from stream_dec.stream.kafka import consumer_settings, producer_settings

    config = config_from_mapping({"kafka": {"bootstrap.servers": "b:1", "linger.ms": 20, "consumer": {
        "queued.max.messages.kbytes": 1024, "enable.auto.commit": True}}}, source="inline")
    consumer, producer = consumer_settings(config), producer_settings(config)
    assert consumer["queued.max.messages.kbytes"] == 1024  # [kafka.consumer] beats stream-dec's default
    assert consumer["fetch.wait.max.ms"] == 10 and consumer["bootstrap.servers"] == "b:1"
    assert consumer["enable.auto.commit"] is False  # forced: offsets are committed after delivery
    assert "queued.max.messages.kbytes" not in producer and producer["linger.ms"] == 20
    assert consumer_settings(config_from_mapping({}, source="inline"))["queued.max.messages.kbytes"] == 262144


def test_unquoted_dotted_kafka_keys_reach_the_clients(tmp_path):
    """`security.protocol = "SASL_SSL"` unquoted is a TOML table; it once vanished silently."""
    from stream_dec.config import kafka_settings, load_config, masked

    path = tmp_path / "c.toml"
    path.write_text('[kafka]\nbootstrap.servers = "b:9092"\nsecurity.protocol = "SASL_SSL"\n'
                    'sasl.mechanisms = "SCRAM-SHA-256"\nsasl.username = "app"\nsasl.password = "hunter2"\n'
                    '\n[kafka.consumer]\nsession.timeout.ms = 6000\n\n[kafka.producer.linger]\nms = 20\n')
    config = load_config(path, environ={"STREAM_DEC_KAFKA__CONSUMER__SESSION_TIMEOUT_MS": "7000",
                                        "STREAM_DEC_KAFKA__SASL_PASSWORD": "from-env"})
    consumer, producer = kafka_settings(config, "consumer"), kafka_settings(config, "producer")
    assert consumer["security.protocol"] == "SASL_SSL" and consumer["sasl.username"] == "app"
    assert consumer["sasl.password"] == "from-env" and producer["sasl.mechanisms"] == "SCRAM-SHA-256"
    assert consumer["session.timeout.ms"] == 7000  # typed like the value it replaces
    assert producer["linger.ms"] == 20 and "session.timeout.ms" not in producer
    shown = masked(config)["kafka"]
    assert shown["sasl.password"] == "***" and shown["security.protocol"] == "SASL_SSL"


def test_a_kafka_value_that_is_not_a_scalar_names_its_key(tmp_path):
    from stream_dec.config import load_config
    from stream_dec.errors import ConfigError

    path = tmp_path / "c.toml"
    path.write_text('[kafka.consumer]\nsasl.mechanisms = ["PLAIN"]\n')
    with pytest.raises(ConfigError, match=r"'kafka.consumer.sasl.mechanisms' must be a string, number or boolean"):
        load_config(path, environ={})


@pytest.mark.parametrize("data, message", [
    ({"reservoir": {"capacity": 500}, "updater": {"min_initial": 2000}},
     "'updater.min_initial' must be <= the staging capacity (500 samples), or the cold start never comes, got 2000"),
    ({"reservoir": {"capacity": 4000, "staging_capacity": 1000}, "updater": {"min_initial": 2000}},
     "'updater.min_initial' must be <= the staging capacity (1000 samples)"),
    ({"reservoir": {"capacity": 5}, "updater": {"min_initial": 2}, "model": {"clusters": 10}},
     "'reservoir.capacity' must be >= model.clusters (10): KMeans needs a sample per centre, got 5"),
])
def test_settings_that_cannot_work_together_are_one_clear_error(data, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_from_mapping(data, source="c.toml")


def test_a_secret_is_never_quoted_in_an_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[redis]\npassword = 12345678\n')
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert "12345678" not in str(raised.value) and "'redis.password' must be a string, got '***'" in str(raised.value)
