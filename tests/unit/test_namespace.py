"""One pipeline, one namespace: everything a pipeline owns derives from its app id."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cdcapp.clickhouse.client import pipeline_database
from cdcapp.clickhouse.generation import pipeline_of
from cdcapp.config import Settings
from cdcapp.model.spec import load_spec
from cdcapp.tools.rebuild import plan


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)


def test_the_seed_pipeline_keeps_its_names() -> None:
    seed = settings(clickhouse_url="clickhouse://default@127.0.0.1:19000")
    assert (seed.app_id, seed.internal_topic_prefix, pipeline_database(seed, load_spec())) == (
        "cdcapp", "cdcapp", "olap_db")


def test_another_app_id_gets_its_own_topics_and_database() -> None:
    blog = settings(app_id="blog-2", clickhouse_url="clickhouse://default@127.0.0.1:19000")
    assert blog.internal_topic_prefix == "blog-2"
    assert pipeline_database(blog, load_spec()) == "blog_2"
    # chdb: the same database name inside the embedded engine
    assert pipeline_database(settings(app_id="blog"), load_spec()) == "blog"


def test_what_is_set_explicitly_wins() -> None:
    spec = load_spec().model_copy(update={"database": "from_spec"})
    base = dict(app_id="blog", clickhouse_url="clickhouse://default@127.0.0.1:19000")
    assert pipeline_database(settings(**base), spec) == "from_spec"
    assert pipeline_database(settings(**base, clickhouse_db="from_env"), spec) == "from_env"
    assert pipeline_database(settings(**{**base, "clickhouse_url": base["clickhouse_url"] + "/from_url"},
                                      clickhouse_db="from_env"), spec) == "from_url"
    assert settings(app_id="blog", internal_topic_prefix="shared").internal_topic_prefix == "shared"


def test_an_app_id_must_be_a_name() -> None:
    with pytest.raises(ValidationError):
        settings(app_id="two words")


def test_a_rebuilt_generation_belongs_to_its_pipeline() -> None:
    blog = settings(app_id="blog", clickhouse_url="clickhouse://default@127.0.0.1:19000")
    rebuilt = plan(blog, load_spec(), None, "20261127t081500").generation.app_id
    assert rebuilt == "blog-r20261127t081500"
    assert pipeline_of(rebuilt) == pipeline_of(rebuilt + "-r20261128t000000") == "blog"
    assert pipeline_of("blog-rollout") == "blog-rollout"
