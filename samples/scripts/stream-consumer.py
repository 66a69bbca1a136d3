#!/usr/bin/env python3
"""A consumer for the receiver's exec-stream sink.

Reads one event record per line on stdin, appends it to a file and acknowledges it with
"ok <delivery id>" on stdout, or "fail <delivery id> <reason>" when the file cannot be written
(the receiver retries it later). Diagnostics go to stderr, which the receiver logs.

    tdhook-receiver ... --sink 'exec-stream:python3 samples/scripts/stream-consumer.py /var/lib/crm/events.ndjson'

The path may also come from TDHOOK_STREAM_FILE (with --pass-env TDHOOK_STREAM_FILE).
"""

import json
import os
import sys


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("TDHOOK_STREAM_FILE", "")
    if not path:
        print("usage: stream-consumer.py FILE (or TDHOOK_STREAM_FILE)", file=sys.stderr)
        return 2
    # Bytes in, bytes out: a record is appended exactly as the receiver sent it.
    records = sys.stdin.buffer
    acks = sys.stdout
    with open(path, "ab") as out:
        for line in iter(records.readline, b""):
            line = line.rstrip(b"\r\n")
            try:
                delivery_id = json.loads(line)["id"]
            except (ValueError, KeyError, TypeError):
                # Without an id there is nothing to acknowledge: the receiver's timeout retries it.
                print("stream-consumer.py: a line that is not an event record, skipped",
                      file=sys.stderr, flush=True)
                continue
            if not isinstance(delivery_id, str) or not delivery_id or any(c.isspace() for c in delivery_id):
                print("stream-consumer.py: a record with an unusable id, skipped",
                      file=sys.stderr, flush=True)
                continue
            try:
                out.write(line + b"\n")
                out.flush()
            except OSError as error:
                print(f"fail {delivery_id} {error.strerror or error}", file=acks, flush=True)
                continue
            # flush: the receiver waits for this line; a buffered ack is a hung consumer.
            print(f"ok {delivery_id}", file=acks, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
