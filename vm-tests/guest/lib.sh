# Shared by the guest scripts: case results, evidence, AVC lookups, srpc calls.
# shellcheck shell=bash

AUDIT=/var/log/audit/audit.log
PWFILE=/root/srpc-passwords
ADDR=127.0.0.1:5640
# Debian's rpm keeps its database in ~/.rpmdb unless told: the guest's is here.
RPMDB=/var/lib/rpm
# The server's pin as `srpcctl status` showed it after the first start.
PINFILE=/root/srpc-pin

timing() { # NAME START: `time NAME SECONDS` into out/timings, and shown
    awk -v a="$2" -v b="$(date +%s.%N)" -v n="$1" \
        'BEGIN { printf "time %s %.1f\n", n, b - a }' | tee -a "$OUT/timings" | sed 's/^/   /'
}

pass() { # NAME
    echo "PASS $1" | tee -a "$OUT/results"
}

fail() { # NAME WHY [EVIDENCE...]: evidence lines are indented under the case
    local name=$1 why=$2
    shift 2
    echo "FAIL $name: $why" | tee -a "$OUT/results"
    local e
    for e in "$@"; do
        [ -n "$e" ] || continue
        printf '%s\n' "$e" | sed 's/^/      | /' | head -40 | tee -a "$OUT/results"
    done
}

check() { # NAME WHY COMMAND...: PASS if the command succeeds, else FAIL with WHY
    local name=$1 why=$2
    shift 2
    local out
    if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$why" "$out"; fi
}

verdict() { # NAME WHY [EVIDENCE...]: PASS if the command just before succeeded
    local st=$? name=$1
    shift
    if [ "$st" -eq 0 ]; then pass "$name"; else fail "$name" "$@"; fi
}

# admin COMMAND...: as root in an admin's login domain (unconfined_t, where
# root logs in on Debian and Fedora), not the runner's initrc_t.
admin() { runcon unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023 "$@"; }
# as_user USER COMMAND...: as an ordinary local user (no SELinux mapping:
# __default__, unconfined_u), as that user's login would be.
as_user() { admin setpriv --reuid="$1" --regid="$1" --init-groups env HOME=/ "${@:2}"; }

audit_mark() { # prints the audit log's current line count
    wc -l < "$AUDIT" 2>/dev/null || echo 0
}

avc_since() { # MARK [GREP-PATTERN...]: AVC denials after MARK matching every pattern
    local mark=$1
    shift
    local lines
    lines=$(tail -n +"$((mark + 1))" "$AUDIT" 2>/dev/null | grep 'avc:  denied' || true)
    local p
    for p in "$@"; do lines=$(printf '%s\n' "$lines" | grep -e "$p" || true); done
    printf '%s' "$lines"
}

wait_avc() { # MARK PATTERN...: waits up to 3 s (of the clock) for a matching AVC, prints it
    local out deadline=$(($(date +%s) + 3))
    while :; do
        out=$(avc_since "$@")
        if [ -n "$out" ]; then printf '%s\n' "$out"; return 0; fi
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.3
    done
}

password() { grep "^$1:" "$PWFILE" | cut -d: -f2-; }

# srpc USER VERB PATH [INPUT]: the CLI as a script uses it; the password on
# stdin's first line, the request after it. Prints stdout+stderr.
srpc_as() {
    local user=$1 verb=$2 path=$3 input=${4:-}
    { password "$user"; printf '%s' "$input"; } |
        timeout 60 srpc --pin "$(cat "$PINFILE")" --user "$user" --password-fd 0 \
            --timeout 30 "$verb" "$ADDR" "$path" 2>&1
}

ctx_of() { cat "/proc/$1/attr/current" 2>/dev/null | tr -d '\0'; }
ctx_type() { echo "$1" | cut -d: -f3; }
ctx_level() { echo "$1" | cut -d: -f4-; }

# single_level LEVEL: one level (no range) with at least one category.
single_level() {
    case $1 in
    *-*) return 1 ;;
    s0:c*) return 0 ;;
    *) return 1 ;;
    esac
}

json_field() { # JSON DOTTED.PATH: a scalar from the whoami reply (no jq in the image)
    python3 - "$1" "$2" 2>/dev/null <<'PY' || sed -n "s/.*\"${2##*.}\":\([^,}]*\).*/\1/p" <<< "$1" | tr -d '"'
import json, sys
v = json.loads(sys.argv[1])
for k in sys.argv[2].split("."):
    v = v[k]
print("null" if v is None else v)
PY
}

srpcd_log() { journalctl -u srpcd.service --no-pager -o cat 2>/dev/null; }
