#!/bin/sh
# Test helper for an exec sink: exits 7 until the file $1/fixed exists, then appends each record
# it gets to $1/records. Stands for a broken script that an operator repairs.
set -eu
if [ ! -e "$1/fixed" ]; then
  echo "fail-until-fixed: not fixed yet" >&2
  exit 7
fi
cat >> "$1/records"
