#!/bin/sh
# Seeds both fuzz corpora with every test vector of docs/protocol.md (valid and
# invalid frames, and conversation payloads), so fuzzing starts from real frames.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
spec="$here/../docs/protocol.md"
for target in decode_frame roundtrip; do
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
done
echo "seeded $(ls "$here/corpus/decode_frame" | wc -l) files per target"
