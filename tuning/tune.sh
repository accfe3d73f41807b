#!/usr/bin/env bash
# tuning/tune.sh - host settings for C10k..C1M ringcast runs (server and load generator).
#
# Idempotent: every setting is compared with its target first and only changed when it falls
# short; persisted settings live in files this script owns whole (/etc/sysctl.d/90-ringcast.conf)
# or in one marked block (/etc/security/limits.conf), rewritten on every --apply.
#
#   bash tuning/tune.sh --dry-run                 # default: print current vs target, change nothing
#   sudo bash tuning/tune.sh --apply              # apply now and persist
#   sudo bash tuning/tune.sh --apply --connections 100000 --notrack-port 9050
#
# Why each knob matters: tuning/README.md.
set -euo pipefail

MODE=dry-run
CONNECTIONS=1000000
NOTRACK_PORT=""
PERSIST=1
SYSCTL_FILE=/etc/sysctl.d/90-ringcast.conf
LIMITS_FILE=/etc/security/limits.conf
BEGIN_MARK="# BEGIN ringcast (managed by tuning/tune.sh)"
END_MARK="# END ringcast"

usage() {
    cat <<'EOF'
usage: tune.sh [--dry-run | --apply] [--connections N] [--notrack-port PORT] [--no-persist]

  --dry-run           print each setting's current value, its target and what would change (default;
                      works unprivileged and changes nothing)
  --apply             change what falls short now (sysctl -w) and persist it (needs root)
  --connections N     connections per host to plan for (default 1000000; minimum 10000)
  --notrack-port P    also exempt TCP port P from connection tracking (iptables raw table)
  --no-persist        with --apply: change the running kernel only
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) MODE=dry-run ;;
        --apply) MODE=apply ;;
        --connections) CONNECTIONS="${2:?--connections needs a number}"; shift ;;
        --notrack-port) NOTRACK_PORT="${2:?--notrack-port needs a port}"; shift ;;
        --no-persist) PERSIST=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

case "$CONNECTIONS" in ''|*[!0-9]*) echo "--connections must be a number" >&2; exit 2 ;; esac
[ "$CONNECTIONS" -ge 10000 ] || CONNECTIONS=10000
if [ "$MODE" = apply ] && [ "$(id -u)" -ne 0 ]; then
    echo "--apply needs root (try: sudo bash $0 --apply ...); --dry-run works as any user" >&2
    exit 1
fi

# ---- targets -----------------------------------------------------------------------------------
# One process (server or load generator) holds CONNECTIONS sockets plus slack; both may run on
# the same host, so the system-wide limit is planned for two such processes.
NOFILE=$(( CONNECTIONS + 65536 ))
[ "$NOFILE" -ge 1048576 ] || NOFILE=1048576
NR_OPEN=$NOFILE
FILE_MAX=$(( 2 * NOFILE + 262144 ))
CONNTRACK_MAX=$(( 2 * CONNECTIONS + 65536 ))
PAGE_BYTES=$(getconf PAGESIZE)
MEM_KIB=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
MEM_PAGES=$(( MEM_KIB * 1024 / PAGE_BYTES ))
# TCP may use up to a quarter of RAM before it starts economising, half under pressure, and
# three quarters at most (the kernel default is about 1/16, 1/12 and 1/8 - too low for C1M).
TCP_MEM="$(( MEM_PAGES / 4 )) $(( MEM_PAGES / 2 )) $(( MEM_PAGES * 3 / 4 ))"

# name | target | rule: "min" raises to at least the target, "set" makes it exactly the target.
SETTINGS=(
    "fs.nr_open|$NR_OPEN|min"
    "fs.file-max|$FILE_MAX|min"
    "net.core.somaxconn|65535|min"
    "net.ipv4.tcp_max_syn_backlog|65535|min"
    "net.core.netdev_max_backlog|65536|min"
    "net.ipv4.tcp_mem|$TCP_MEM|set"
    "net.ipv4.tcp_rmem|4096 8192 6291456|set"
    "net.ipv4.tcp_wmem|4096 8192 4194304|set"
    "net.ipv4.ip_local_port_range|1024 65535|set"
    "net.ipv4.tcp_tw_reuse|1|set"
    "net.netfilter.nf_conntrack_max|$CONNTRACK_MAX|min"
)

# ---- helpers -----------------------------------------------------------------------------------
proc_path() { echo "/proc/sys/$(echo "$1" | tr . /)"; }

current_value() {
    local path
    path=$(proc_path "$1")
    if [ -r "$path" ]; then tr -s ' \t' '  ' < "$path" | sed 's/^ //; s/ $//'; else echo "n/a"; fi
}

# Prints "keep", "change" or "absent" for a setting.
decide() {
    local current="$1" target="$2" rule="$3"
    if [ "$current" = "n/a" ]; then echo absent; return; fi
    if [ "$rule" = min ]; then
        if [ "$current" -ge "$target" ] 2>/dev/null; then echo keep; else echo change; fi
    elif [ "$current" = "$target" ]; then
        echo keep
    else
        echo change
    fi
}

CHANGES=0
report() { printf '  %-34s %-30s %-30s %s\n' "$1" "$2" "$3" "$4"; }

# ---- sysctls -----------------------------------------------------------------------------------
echo "ringcast host tuning for $CONNECTIONS connections per process ($MODE)"
echo
report "setting" "current" "target" "action"
PERSIST_LINES=()
for entry in "${SETTINGS[@]}"; do
    IFS='|' read -r name target rule <<< "$entry"
    current=$(current_value "$name")
    action=$(decide "$current" "$target" "$rule")
    case "$action" in
        keep)
            report "$name" "$current" "$target" "ok"
            # Persist what is ours (set rules, or a minimum that sits exactly at the target), never
            # lower a value someone raised further.
            if [ "$rule" = set ] || [ "$current" = "$target" ]; then PERSIST_LINES+=("$name = $target"); fi ;;
        absent)
            report "$name" "$current" "$target" "skip (not present: module not loaded?)" ;;
        change)
            CHANGES=$(( CHANGES + 1 ))
            PERSIST_LINES+=("$name = $target")
            if [ "$MODE" = apply ]; then
                sysctl -q -w "$name=$target"
                report "$name" "$current" "$target" "CHANGED"
            else
                report "$name" "$current" "$target" "would change"
            fi ;;
    esac
done

# ---- persistence -------------------------------------------------------------------------------
sysctl_file_text() {
    echo "# Written by ringcast tuning/tune.sh for $CONNECTIONS connections; rewritten on every --apply."
    local line
    for line in "${PERSIST_LINES[@]}"; do echo "$line"; done
}

limits_block() {
    echo "$BEGIN_MARK"
    echo "*    soft nofile $NOFILE"
    echo "*    hard nofile $NOFILE"
    echo "root soft nofile $NOFILE"
    echo "root hard nofile $NOFILE"
    echo "$END_MARK"
}

echo
# Prints the managed block of the limits file (exact line match, no regex: the marks hold '/').
managed_block() {
    awk -v begin="$BEGIN_MARK" -v end="$END_MARK" '$0 == begin {inside = 1} inside {print} $0 == end {inside = 0}' "$LIMITS_FILE" 2>/dev/null || true
}

# Prints the limits file without the managed block.
without_managed_block() {
    awk -v begin="$BEGIN_MARK" -v end="$END_MARK" '$0 == begin {inside = 1} !inside {print} $0 == end {inside = 0}' "$LIMITS_FILE" 2>/dev/null || true
}

current_limits=$(managed_block)
echo "  nofile (this shell): soft $(ulimit -Sn), hard $(ulimit -Hn); target $NOFILE for new logins"
if [ "$current_limits" = "$(limits_block)" ]; then
    echo "  $LIMITS_FILE: ringcast block up to date"
elif [ "$MODE" = apply ] && [ "$PERSIST" = 1 ]; then
    tmp=$(mktemp)
    without_managed_block > "$tmp"
    limits_block >> "$tmp"
    cat "$tmp" > "$LIMITS_FILE"
    rm -f "$tmp"
    echo "  $LIMITS_FILE: ringcast block written (takes effect at the next login)"
else
    echo "  $LIMITS_FILE: would write this block (takes effect at the next login):"
    limits_block | sed 's/^/      /'
fi

if [ "$PERSIST" = 1 ] && [ "${#PERSIST_LINES[@]}" -gt 0 ]; then
    if [ -r "$SYSCTL_FILE" ] && [ "$(cat "$SYSCTL_FILE")" = "$(sysctl_file_text)" ]; then
        echo "  $SYSCTL_FILE: up to date"
    elif [ "$MODE" = apply ]; then
        sysctl_file_text > "$SYSCTL_FILE"
        echo "  $SYSCTL_FILE: written (applied again at boot)"
    else
        echo "  $SYSCTL_FILE: would write:"
        sysctl_file_text | sed 's/^/      /'
    fi
fi

# ---- connection tracking -----------------------------------------------------------------------
if [ -n "$NOTRACK_PORT" ]; then
    rules=("PREROUTING -p tcp --dport $NOTRACK_PORT -j CT --notrack"
           "OUTPUT -p tcp --sport $NOTRACK_PORT -j CT --notrack"
           "OUTPUT -p tcp --dport $NOTRACK_PORT -j CT --notrack"
           "PREROUTING -p tcp --sport $NOTRACK_PORT -j CT --notrack")
    for rule in "${rules[@]}"; do
        # shellcheck disable=SC2086 # the rule is a list of iptables words
        if command -v iptables > /dev/null && iptables -t raw -C $rule 2> /dev/null; then
            echo "  iptables -t raw $rule: present"
        elif [ "$MODE" = apply ]; then
            # shellcheck disable=SC2086
            iptables -t raw -A $rule
            echo "  iptables -t raw -A $rule: added"
            CHANGES=$(( CHANGES + 1 ))
        else
            echo "  iptables -t raw -A $rule: would add"
        fi
    done
fi

# ---- source addresses --------------------------------------------------------------------------
echo
echo "  source addresses: each (source IP, destination IP:port) pair has ~64k ephemeral ports, so"
echo "  1M client connections to one server port need >= 16 source addresses. On loopback the whole"
echo "  127.0.0.0/8 is already local (no aliases needed): --source-ips 127.0.0.1-127.0.0.32."
echo "  Across real NICs add addresses on the client host, e.g. 'ip addr add 10.0.0.11/24 dev eth0'"
echo "  (one per 60k connections) and pass them with --source-ips; this script adds none."
echo
if [ "$MODE" = apply ]; then
    echo "done: $CHANGES change(s) applied"
else
    echo "dry run: $CHANGES setting(s) would change; run with --apply as root to change them"
fi
