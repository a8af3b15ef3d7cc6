"""The command line of each control-plane component: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler (all run as `ktc <component>`) and the stand-in
kubelet, with the files of a control plane's state directory.

Pure: paths and ports in, argv out. Not for: starting, waiting for or stopping them
(`stash_dev.controlplane`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from stash_dev import pki

#: kube-controller-manager controllers the operator and its tests rely on.
CONTROLLERS = [
    "namespace-controller",
    "garbage-collector-controller",
    "deployment-controller",
    "replicaset-controller",
    "replicationcontroller-controller",
    "statefulset-controller",
    "daemonset-controller",
    "job-controller",
    "serviceaccount-controller",
    "root-ca-certificate-publisher-controller",
    "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
    "ttl-after-finished-controller",
    # Services get EndpointSlices (and Endpoints) of their ready pods' IPs: the apiserver
    # reaches a webhook Service through them (--enable-aggregator-routing).
    "endpoints-controller",
    "endpointslice-controller",
]


def etcd_args(state_dir: Path, port: int, peer_port: int) -> list[str]:
    """`ktc etcd`: a single member on loopback, its data in the state directory."""
    return [
        "etcd",
        f"--data-dir={state_dir / 'etcd'}",
        f"--listen-client-url=http://127.0.0.1:{port}",
        f"--listen-peer-url=http://127.0.0.1:{peer_port}",
    ]


def apiserver_args(state_dir: Path, etcd_port: int, port: int) -> list[str]:
    """`ktc kube-apiserver` on 127.0.0.1:`port`: RBAC, token and certificate clients."""
    d = state_dir / "pki"
    return [
        "kube-apiserver",
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={d}",
        f"--tls-cert-file={d / 'apiserver.crt'}",
        f"--tls-private-key-file={d / 'apiserver.key'}",
        f"--client-ca-file={d / 'ca.crt'}",
        f"--token-auth-file={state_dir / 'tokens.csv'}",
        "--authorization-mode=RBAC",
        f"--service-account-issuer=https://127.0.0.1:{port}",
        f"--service-account-key-file={d / 'sa.pub'}",
        f"--service-account-signing-key-file={d / 'sa.key'}",
        "--service-cluster-ip-range=10.0.0.0/24",
        # Without it every namespace needs a `default` ServiceAccount before its first
        # Pod, a race in tests; envtest turns it off for the same reason.
        "--disable-admission-plugins=ServiceAccount",
        "--allow-privileged=true",
        # Webhook (and aggregated API) Services are called at an endpoint's IP, the pod
        # IP the stand-in kubelet reported (an address of this host); there is no
        # kube-proxy to make a ClusterIP reachable.
        "--enable-aggregator-routing=true",
        # The front proxy: how the apiserver authenticates to aggregated APIs, and what
        # they trust (published in kube-system/extension-apiserver-authentication).
        f"--requestheader-client-ca-file={d / 'front-proxy-ca.crt'}",
        f"--requestheader-allowed-names={pki.FRONT_PROXY_CLIENT}",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        f"--proxy-client-cert-file={d / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={d / 'front-proxy-client.key'}",
        # The stand-in kubelet's exec endpoint: found at the Node's InternalIP (its only
        # address), its certificate checked against the cluster CA, ours presented.
        f"--kubelet-certificate-authority={d / 'ca.crt'}",
        f"--kubelet-client-certificate={d / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={d / 'apiserver-kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP",
        # configmaps bypass the watch cache so a test can see etcd compaction -> 410.
        "--watch-cache-sizes=configmaps#0",
        "--profiling=false",
        "--v=1",
    ]


def kcm_args(state_dir: Path, kubeconfig: Path, port: int) -> list[str]:
    """`ktc kube-controller-manager` running CONTROLLERS, signing with the SA key."""
    d = state_dir / "pki"
    return [
        "kube-controller-manager",
        f"--kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={state_dir / 'kcm-certs'}",
        f"--controllers={','.join(CONTROLLERS)}",
        f"--root-ca-file={d / 'ca.crt'}",
        f"--service-account-private-key-file={d / 'sa.key'}",
        "--concurrent-gc-syncs=5",
        "--v=1",
    ]


def scheduler_args(state_dir: Path, kubeconfig: Path, port: int) -> list[str]:
    """`ktc kube-scheduler` without leader election."""
    return [
        "kube-scheduler",
        f"--kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={state_dir / 'scheduler-certs'}",
        "--v=1",
    ]


def kubelet_command(
    state_dir: Path,
    kubeconfig: Path,
    nodes: int,
    node_ip: str,
    pod_cidr: str | None,
    port: int = 0,
) -> list[str]:
    """`python -m stash_dev.kubelet` for `nodes` Nodes at `node_ip` (see stash_dev.podips),
    serving exec on `port` (when not 0) with the state directory's kubelet certificate."""
    d = state_dir / "pki"
    cmd = [
        sys.executable,
        "-m",
        "stash_dev.kubelet",
        f"--kubeconfig={kubeconfig}",
        f"--nodes={nodes}",
        f"--volumes-dir={state_dir / 'volumes'}",
        f"--node-ip={node_ip}",
    ]
    if pod_cidr:
        cmd.append(f"--pod-cidr={pod_cidr}")
    if port:
        cmd += [
            f"--port={port}",
            f"--tls-cert-file={d / 'kubelet.crt'}",
            f"--tls-private-key-file={d / 'kubelet.key'}",
            f"--client-ca-file={d / 'ca.crt'}",
        ]
    return cmd
