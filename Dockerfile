# signbus server image: `docker build -t signbus .`; see docker-compose.yml for running it next to RabbitMQ.
# Run it with an init that reaps (docker run --init, compose `init: true`): gpg-agent double-forks.

FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgpgme-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY schemas ./schemas
COPY benches ./benches
# The registry and target directories are cache mounts (BuildKit, podman/buildah): a rebuild recompiles what
# changed, not every dependency. The binary is copied out of the cache within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin signbus \
    && cp target/release/signbus /usr/local/bin/signbus

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends gpg gpg-agent libgpgme11 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/signbus --create-home signbus \
    && install -d -o signbus -g signbus -m 700 /var/lib/signbus/gnupg
COPY --from=build /usr/local/bin/signbus /usr/local/bin/signbus
USER signbus
ENV GNUPGHOME=/var/lib/signbus/gnupg
EXPOSE 9464
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/signbus"]
CMD ["serve", "--config", "/etc/signbus/server.yaml", "--log-format", "json"]
