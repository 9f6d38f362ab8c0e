"""Getting requests to TensorFlow: adaptive batching, or one call per request.

Three modules, by how long their state lives:

- `rows`: pure functions of the tensors (rows of a request, which requests may share a
  call, stacking inputs and slicing outputs). No state.
- `queue`: the queue of one runner, alive as long as the model version is served, and
  the batch being collected, alive from its first request until its call starts. The
  policy: the batcher takes the oldest request, then keeps taking until it has
  `max_size` rows or the oldest has waited `max_wait` (it does not wait when every
  request in flight is already in the batch). The batch's timer firing ends the wait by
  itself, so the wait never depends on comparing clock readings (uvloop's clock counts
  whole milliseconds). While a call runs new requests queue up, so under load batches
  grow by themselves and nobody waits longer than one call plus `max_wait`.
- `runners`: what the server calls per request: the batching runner (a queue plus the
  calls it makes: requests whose inputs match beyond dimension 0 share one call, and a
  failing shared call is re-run request by request) or the direct runner (one call per
  request), both on the inference executor, never on the event loop.
"""
