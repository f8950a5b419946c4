"""``regsvc reindex``: commits whose stream records were lost before they were
indexed get indexed from the events table, after their streams' earlier
commits; what is indexed already is not indexed again."""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.dynamodb.reindex import reindex
from tests.dynamodb.test_indexer import (
    assert_is_the_log_of,
    core,
    recorder,
    stream_records,
    write_commits,
)

if TYPE_CHECKING:
    from infra.dynamodb import DynamoDBApplicationRecorder, DynamoDBDatastore

__all__ = ["recorder"]  # the fixture, shared with test_indexer


def test_reindex_indexes_the_commits_whose_records_were_lost_and_nothing_twice(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    commits = write_commits(recorder, 30, seed=7)
    records = stream_records(datastore, recorder)
    indexed = core(recorder).index_records(records[: len(records) // 3])  # the rest: lost
    total = sum(len(commit) for commit in commits)
    assert 0 < indexed < total
    progress: list[int] = []

    scanned, newly = reindex(recorder, on_progress=progress.append, page_size=7)

    assert (scanned, newly) == (total, total - indexed)
    assert progress[-1] == total
    assert len(progress) > 1
    assert_is_the_log_of(recorder, commits)
    assert reindex(recorder) == (total, 0)
    assert core(recorder).index_records(records) == 0
