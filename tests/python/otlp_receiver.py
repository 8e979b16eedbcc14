"""A local OTLP/HTTP trace receiver for the tests (issue 15): it decodes every POSTed body with
the official OpenTelemetry protobuf messages (PyPI `opentelemetry-proto`), an implementation
independent of edgebind's hand-written encoder; a body that is not an `ExportTraceServiceRequest`
is answered 400 and recorded as an error.

Used in-process by tests/python/test_otlp_export.py, and as a process by the Worker's end-to-end
suite (worker/test/e2e.test.mjs): `python otlp_receiver.py` prints `{"url": ...}`, then one JSON
line per POST: path, headers (lower-case names) and the request as protobuf's JSON mapping
(bytes as base64, 64-bit integers as strings)."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


class Receiver:
    """Records every POST, decoded; answers the first `fail_first` with 503 and `Retry-After: 1`
    (a retryable response in the OTLP specification), the others 200, with a partial success
    `(rejected_spans, error_message)` if `partial` is given. `on_post(record)` sees each record
    as it arrives."""

    def __init__(self, port: int = 0, fail_first: int = 0, partial: tuple[int, str] | None = None, on_post=None):
        self.posts: list[dict] = []
        self.errors: list[str] = []
        self.fail_first = fail_first
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                req = ExportTraceServiceRequest()
                try:
                    req.ParseFromString(body)
                except DecodeError as e:
                    recv.errors.append(str(e))
                    self.answer(400)
                    return
                record = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                          "body": body, "request": req}
                recv.posts.append(record)
                if on_post:
                    on_post(record)
                if len(recv.posts) <= recv.fail_first:
                    self.answer(503, [("Retry-After", "1")])
                else:
                    # Empty: everything accepted.
                    resp = ExportTraceServiceResponse()
                    if partial:
                        resp.partial_success.CopyFrom(ExportTracePartialSuccess(rejected_spans=partial[0], error_message=partial[1]))
                    self.answer(200, [("Content-Type", "application/x-protobuf")], resp.SerializeToString())

            def answer(self, status: int, headers=(), body: bytes = b""):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    lock = threading.Lock()

    def emit(obj):
        with lock:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    r = Receiver(on_post=lambda rec: emit({"path": rec["path"], "headers": rec["headers"],
                                           "request": MessageToDict(rec["request"], preserving_proto_field_name=True)}))
    emit({"url": r.url})
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        r.close()


if __name__ == "__main__":
    main()
