"""One detector code, two engines: every detector gives identical findings on DuckDB and on Spark (local mode).

One SparkSession for the module (starting the JVM is the slow part); the graph is the generator's smallest.
"""

from __future__ import annotations

import pytest

from clearcircle.detectors.engine import DuckDBEngine, SparkEngine
from clearcircle.detectors.generate import generate_graph
from clearcircle.detectors.run import DETECTORS, load_tables


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    folder = tmp_path_factory.mktemp("graph")
    return folder, generate_graph(60_000, folder, seed=11)


@pytest.fixture(scope="module")
def spark():
    engine = SparkEngine("local[2]", partitions=2)
    yield engine
    engine.close()


@pytest.mark.parametrize("name", list(DETECTORS))
def test_duckdb_and_spark_give_identical_findings(name, graph, spark):
    folder, _truth = graph
    det = DETECTORS[name]
    duck = DuckDBEngine()
    load_tables(duck, folder, det.tables)
    expected = det.fn(duck)
    duck.close()
    load_tables(spark, folder, det.tables)
    got = det.fn(spark)
    assert expected, f"{name} found nothing: the comparison would prove nothing"
    assert got == expected


def test_spark_reads_the_same_tables_as_duckdb(graph, spark):
    folder, truth = graph
    load_tables(spark, folder, ("follows",))
    assert spark.rows("SELECT COUNT(*) FROM follows")[0][0] == truth.sizes["follows"]
