"""The offline single-node cluster: upstream Kubernetes built here, bootstrapped with kubeadm.

One module per job: layout (names and paths), host (machine prerequisites), processes
and supervisor/services (supervised host processes), containerd, kubeadm, kubelet, cni,
iptables, addons, cleanup (leftovers of killed clusters), provider (up/down/status).
"""
