#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of Bulkhead on Debian bookworm.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git
  clang llvm lld clang-format clang-tidy libclang-rt-14-dev
  # libraries
  libyaml-cpp-dev nlohmann-json3-dev libabsl-dev libcli11-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  libbpf-dev bpftool libelf-dev zlib1g-dev linux-libc-dev
  libsqlite3-dev libcurl4-openssl-dev libssl-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libcpp-httplib-dev libdtl-dev
  # control-plane store tests run a real etcd cluster on loopback
  etcd-server etcd-client
  # kernel-facing tools used by tests, the lab and benchmarks
  iproute2 iputils-ping nftables iptables containernetworking-plugins
  socat netcat-openbsd iperf3 procps python3
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
echo "install-deps: all ${#PACKAGES[@]} packages present"
