# Builds the example service (examples/service.rs) for deploy/docker-compose.yml.
# Build context: the repository root.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --example service \
 && cp target/release/examples/service /usr/local/bin/glimpse-example-service

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* && mkdir -p /data
COPY --from=build /usr/local/bin/glimpse-example-service /usr/local/bin/glimpse-example-service
ENV GLIMPSE_ADDR=0.0.0.0:3000 GLIMPSE_METRICS_ADDR=0.0.0.0:9464
EXPOSE 3000 9464
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/glimpse-example-service"]
