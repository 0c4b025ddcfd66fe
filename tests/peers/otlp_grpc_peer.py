"""An independent OTLP/gRPC receiver for glimpse_obs: gRPC's C core
(`grpcio`) with the OpenTelemetry Python protobufs and their generated
services (see tests/otlp_grpc_python_peer.rs).

Serves the trace, metrics and logs `Export` methods on 127.0.0.1:<free port>
without TLS. The server compresses its answers with gzip, as a collector
may (grpc-go, the OpenTelemetry Collector's, answers in the compression of
the request). Each request is appended to <out> as one JSON object:
{"signal": ..., "metadata": {...}, "body": <MessageToDict of the request,
field names as in the proto>}. A request whose metadata has `x-refuse`
is refused with RESOURCE_EXHAUSTED and the message "collector queue is
full: retry later", as a collector under pressure answers.

Prints "listening <port>" on stdout once ready; runs until killed.

Usage: python otlp_grpc_peer.py <out.jsonl>
"""

import json
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

lock = threading.Lock()
out = open(sys.argv[1], "a", encoding="utf-8")


def handle(signal, request, context, response):
    metadata = {k: v for k, v in context.invocation_metadata()}
    if "x-refuse" in metadata:
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "collector queue is full: retry later")
    with lock:
        out.write(
            json.dumps(
                {
                    "signal": signal,
                    "metadata": metadata,
                    "body": MessageToDict(request, preserving_proto_field_name=True),
                }
            )
            + "\n"
        )
        out.flush()
    return response


class Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        return handle("traces", request, context, trace_service_pb2.ExportTraceServiceResponse())


class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def Export(self, request, context):
        return handle(
            "metrics", request, context, metrics_service_pb2.ExportMetricsServiceResponse()
        )


class Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def Export(self, request, context):
        return handle("logs", request, context, logs_service_pb2.ExportLogsServiceResponse())


server = grpc.server(
    futures.ThreadPoolExecutor(max_workers=4), compression=grpc.Compression.Gzip
)
trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print("listening", port, flush=True)
server.wait_for_termination()
