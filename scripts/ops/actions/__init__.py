"""Steps every cluster gets after its provider brought it up (kind's pkg/cluster/internal/create/actions).

One module per step: pod_network (flannel, where the provider asks for a CNI), nodes
(every node Ready), metrics_server (the HPA's and `kubectl top`'s metrics API), storage
(a default StorageClass "standard", local-path, as on kind). Each is idempotent: running
it on a cluster that already has it changes nothing. Actions import providers' data
never their code; ops.cluster runs them in order.
"""
