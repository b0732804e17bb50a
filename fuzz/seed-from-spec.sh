#!/bin/sh
# Seeds the frame corpora with every test vector of docs/protocol.md (valid and
# invalid frames, and conversation payloads), so fuzzing starts from real frames;
# the deframer's with the same frames (after a zero cut count), and the monitor
# channel's with one datagram of each ToMonitor op.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
spec="$here/../docs/protocol.md"
for target in decode_frame roundtrip deframer ipc_to_monitor; do
    mkdir -p "$here/corpus/$target"
done
awk '
    /^```(vector|invalid-vector)$/ { inside = 1; name = ""; hex = ""; next }
    inside && /^```$/ { print name "\t" hex; inside = 0; next }
    inside && name == "" { name = $0; next }
    inside && /^(error|code): / { next }
    inside { gsub(/[ \t]/, ""); hex = hex $0 }
' "$spec" |
while IFS="$(printf '\t')" read -r name hex; do
    file=$(printf '%s' "$name" | tr -c 'A-Za-z0-9_-' '_')
    for target in decode_frame roundtrip; do
        printf '%s' "$hex" | xxd -r -p > "$here/corpus/$target/spec-$file"
    done
    { printf '\000'; printf '%s' "$hex" | xxd -r -p; } > "$here/corpus/deframer/spec-$file"
done
# ipc_to_monitor: fd count byte, u32 header length, header JSON, payload.
n=0
for header in \
    '{"op":"auth_start","auth":1,"user":"alice","aname":"/","rhost":"127.0.0.1"}' \
    '{"op":"auth_answer","auth":1}' \
    '{"op":"auth_abort","auth":1}' \
    '{"op":"attach","auth":1}' \
    '{"op":"session_end","auth":1}'; do
    n=$((n + 1))
    {
        printf '\000'
        printf '%08x' "${#header}" | xxd -r -p
        printf '%s' "$header"
        printf '{"answers":["pw"]}'
    } > "$here/corpus/ipc_to_monitor/op-$n"
done
echo "seeded $(ls "$here/corpus/decode_frame" | wc -l) files per target"
