#!/bin/sh
# Generates the Python stubs (+ .pyi) and the descriptor set Envoy transcodes with, from every
# .proto here, then the OpenAPI document and Swagger UI's files that Envoy serves (from that
# descriptor set: gateway/openapi.py): `protos/generate.sh OUT_DIR` (PYTHON selects the
# interpreter that has grpcio-tools and the project). The Makefile and the Dockerfile both run
# this one command.
set -eu
PYTHON=${PYTHON:-python}
OUT=$1
PROTOS=$(dirname "$0")
SITE=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -rf "$OUT"
mkdir -p "$OUT"
# shellcheck disable=SC2046  # one argument per .proto file; their paths have no spaces
"$PYTHON" -m grpc_tools.protoc -I"$PROTOS" -I"$SITE" -I"$SITE/grpc_tools/_proto" \
    --python_out="$OUT" --grpc_python_out="$OUT" --pyi_out="$OUT" \
    --include_imports --include_source_info --descriptor_set_out="$OUT/marquee.pb" \
    $(find "$PROTOS" -name '*.proto' | sort)
test -s "$OUT/marquee.pb"
# The stubs just generated register the options that the document reads (access, openapi).
PYTHONPATH="$OUT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m gateway.openapi "$OUT"
test -s "$OUT/openapi.json"
