"""Decode OTLP ExportTraceServiceRequest bodies with the OpenTelemetry Python
protobufs (opentelemetry-proto, installed with the OTLP exporter by
tests/peers/setup.sh) and print the spans as one JSON document.

Usage: decode_traces.py BODY_FILE...   (each file: one request's protobuf bytes)
Used by tests/span_pipeline_python_decodes_spans.rs.
"""

import json
import sys

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status


def value(any_value):
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    v = getattr(any_value, kind)
    if kind == "array_value":
        return [value(x) for x in v.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.values}
    if kind == "bytes_value":
        return v.hex()
    return v


def attrs(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


def main():
    out = []
    for path in sys.argv[1:]:
        req = ExportTraceServiceRequest()
        with open(path, "rb") as f:
            req.ParseFromString(f.read())
        for rs in req.resource_spans:
            resource = attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append(
                        {
                            "name": s.name,
                            "kind": Span.SpanKind.Name(s.kind),
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex(),
                            "trace_state": s.trace_state,
                            "flags": s.flags,
                            "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano,
                            "status": {
                                "code": Status.StatusCode.Name(s.status.code),
                                "message": s.status.message,
                            },
                            "attributes": attrs(s.attributes),
                            "events": [
                                {
                                    "name": e.name,
                                    "time": e.time_unix_nano,
                                    "attributes": attrs(e.attributes),
                                }
                                for e in s.events
                            ],
                            "links": [
                                {
                                    "trace_id": l.trace_id.hex(),
                                    "span_id": l.span_id.hex(),
                                    "flags": l.flags,
                                }
                                for l in s.links
                            ],
                            "resource": resource,
                            "scope": {"name": ss.scope.name, "version": ss.scope.version},
                        }
                    )
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
