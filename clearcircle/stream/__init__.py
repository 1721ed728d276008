"""Events fed through a stream to many stateless workers (issue 10).

`base` holds the one small interface the engine sees (an event source, a decision sink); `redis_streams`
implements it on Redis Streams with consumer groups and partition leases; `worker` is the loop that decides
batches through the pipeline and acknowledges them after commit; `sinks` hold where decisions go out.
"""

from clearcircle.stream.base import (
    Batch,
    DecisionSink,
    Entry,
    EventSource,
    StreamError,
    partition_account,
    partition_of,
)

__all__ = ["Batch", "DecisionSink", "Entry", "EventSource", "StreamError", "partition_account",
           "partition_of"]
