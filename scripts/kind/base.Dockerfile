# The kind node base image, built offline (ops.kind_image; `make kind-image`).
#
# kind v0.26.0's images/base/Dockerfile, step for step, with what is installed from
# Debian bookworm instead of downloaded: the root (FROM) is a debootstrapped bookworm
# with every package kind's Dockerfile installs plus containerd, runc and the CNI
# plugins (Debian's containerd 1.6 and runc fit the containerd config kind ships), and
# crictl is the project's build. kind's own files (entrypoint, containerd config,
# systemd units, /kind/bin scripts) are copied from the kind module's source with their
# modes already set (no COPY --chmod: no Dockerfile frontend can be pulled here).
ARG ROOTFS_IMAGE
FROM ${ROOTFS_IMAGE} AS build

# Packages first, then kind's files (copying first makes dpkg trip on the conffile).
COPY files/usr/local/bin/ /usr/local/bin/
COPY files/kind/ /kind/
COPY files/LICENSES/ /LICENSES/
COPY files/etc/ /etc/

RUN find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \
    && rm -f /lib/systemd/system/multi-user.target.wants/* \
    && rm -f /etc/systemd/system/*.wants/* \
    && rm -f /lib/systemd/system/local-fs.target.wants/* \
    && rm -f /lib/systemd/system/sockets.target.wants/*udev* \
    && rm -f /lib/systemd/system/sockets.target.wants/*initctl* \
    && rm -f /lib/systemd/system/basic.target.wants/* \
    && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \
    && ln -sf "$(command -v systemd || echo /lib/systemd/systemd)" /sbin/init

RUN systemctl enable kubelet.service \
    && systemctl enable containerd.service \
    && systemctl enable undo-mount-hacks.service \
    && systemctl mask systemd-binfmt.service \
    && mkdir -p /etc/kubernetes/manifests

# kind's units start /usr/local/bin/containerd; Debian installs it in /usr/bin.
# The CNI plugins go where kind's containerd config looks (/opt/cni/bin).
# restrict_oom_score_adj: a node may lack CAP_SYS_RESOURCE (see ops.docker_caps), and then
# containerd must not try to lower a container's OOM score below its own.
COPY crictl /usr/local/bin/crictl
RUN ln -sf /usr/bin/containerd /usr/local/bin/containerd \
    && ln -sf /usr/bin/containerd-shim-runc-v2 /usr/local/bin/containerd-shim-runc-v2 \
    && ln -sf /usr/bin/ctr /usr/local/bin/ctr \
    && mkdir -p /opt/cni/bin && cp -a /usr/lib/cni/. /opt/cni/bin/ \
    && ctr oci spec \
        | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
        | jq 'del(.process.rlimits)' \
        > /etc/containerd/cri-base.json \
    && sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' /etc/containerd/config.toml \
    && containerd --version && runc --version && crictl --version

# Squash to one layer, then kind's metadata.
FROM scratch
COPY --from=build / /
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]
