#!/usr/bin/env bash
# Regenerates test/fixtures/ggml-quants.safetensors from ggml's own reference quantizers.
# usage: bash scripts/ggml-quant-fixtures/make-fixtures.sh PATH/TO/ggml   (a checkout of github.com/ggml-org/ggml)
# Needs gcc; the tests only read the committed output.
set -euo pipefail
ggml=${1:?usage: make-fixtures.sh PATH/TO/ggml}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ggml-cpu"
cp "$ggml"/include/{ggml.h,gguf.h,ggml-cpu.h,ggml-backend.h,ggml-alloc.h} "$ggml"/src/{ggml-common.h,ggml-impl.h,ggml-quants.c,ggml-quants.h} "$work/"
cp "$ggml"/src/ggml-cpu/ggml-cpu-impl.h "$work/ggml-cpu/"
gcc -O1 -w -I"$work" -I"$work/ggml-cpu" -c "$work/ggml-quants.c" -o "$work/quants.o"
gcc -O1 -w -I"$work" "$here/make_fixtures.c" "$work/quants.o" -lm -o "$work/make_fixtures"
mkdir -p "$work/out"
(cd "$work/out" && "$work/make_fixtures")
commit=${GGML_COMMIT:-$(git -C "$ggml" rev-parse --short HEAD 2>/dev/null || echo '?')}
(cd "$repo" && npx tsx "$here/to_safetensors.mts" "$work/out" test/fixtures/ggml-quants.safetensors "$commit")
echo "wrote test/fixtures/ggml-quants.safetensors (ggml $commit)"
