#!/usr/bin/env bash
# Installs what a fresh machine lacks: Debian packages, the venv, pip deps.
# Idempotent and quick when everything is present (stamp files keyed on inputs).
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium: only the web page test drives it (headless); tmux and tshark: only the top
# and pcapng tests; nothing of the product needs them (libpcap: capture --filter).
APT_PKGS=(clang llvm libbpf-dev bpftool iproute2 ethtool tcpdump hping3
	nftables iptables xdp-tools linux-libc-dev curl netcat-openbsd iputils-ping make
	dnsmasq-base bind9-dnsutils ntpsec-ntpdig chromium tmux libpcap0.8 tshark
	redis-server)
VENV=.venv
PY=${PYTHON:-python3}

need_apt=()
for p in "${APT_PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		need_apt+=("$p")
done
if ((${#need_apt[@]})); then
	if [ "$(id -u)" != 0 ]; then
		echo "bootstrap: missing Debian packages: ${need_apt[*]} (run as root)" >&2
		exit 1
	fi
	echo "bootstrap: installing ${need_apt[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

stamp=$VENV/.xdpshield-stamp
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -x "$VENV/bin/python" ]; then
	"$PY" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
	"$VENV/bin/pip" install -q --upgrade pip
	"$VENV/bin/pip" install -q -e ".[dev,lab,fleet]"
	echo "$want" >"$stamp"
fi
