"""Decodes an OTLP ExportMetricsServiceRequest with the OpenTelemetry Python
protobufs (opentelemetry-proto, installed with the OTLP exporter) and prints
what it holds as JSON, for tests/otlp_metrics_python_peer.rs.

Usage: python otlp_metrics_peer.py <file with the request's protobuf bytes>
"""

import json
import sys

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)


def attrs(kvs):
    out = {}
    for kv in kvs:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None
    return out


def number(p):
    return p.as_int if p.WhichOneof("value") == "as_int" else p.as_double


def main():
    with open(sys.argv[1], "rb") as f:
        req = ExportMetricsServiceRequest.FromString(f.read())
    out = {"resource": {}, "scope": None, "metrics": {}}
    for rm in req.resource_metrics:
        out["resource"] = attrs(rm.resource.attributes)
        for sm in rm.scope_metrics:
            out["scope"] = sm.scope.name
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                entry = {"kind": kind, "unit": m.unit, "description": m.description, "points": []}
                if kind == "sum":
                    entry["monotonic"] = m.sum.is_monotonic
                    entry["temporality"] = m.sum.aggregation_temporality
                    entry["points"] = [
                        {"attributes": attrs(p.attributes), "value": number(p)}
                        for p in m.sum.data_points
                    ]
                elif kind == "gauge":
                    entry["points"] = [
                        {"attributes": attrs(p.attributes), "value": number(p)}
                        for p in m.gauge.data_points
                    ]
                elif kind == "histogram":
                    entry["temporality"] = m.histogram.aggregation_temporality
                    entry["points"] = [
                        {
                            "attributes": attrs(p.attributes),
                            "bounds": list(p.explicit_bounds),
                            "buckets": list(p.bucket_counts),
                            "sum": p.sum,
                            "count": p.count,
                        }
                        for p in m.histogram.data_points
                    ]
                out["metrics"][m.name] = entry
    print(json.dumps(out))


if __name__ == "__main__":
    main()
