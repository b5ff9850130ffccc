# syntax=docker/dockerfile:1
# The oracle node image: `docker build -t price-oracle .`, then `docker run price-oracle --help`.

# cargo-chef splits the build so that the dependency layer is rebuilt only when Cargo.toml or
# Cargo.lock change, not on every source edit.
FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked --version ^0.1
WORKDIR /src

FROM chef AS plan
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=plan /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin oracle
COPY . .
RUN cargo build --release --locked --bin oracle

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /var/lib/oracle oracle \
 && mkdir -p /keys \
 && chown oracle /keys
COPY --from=build /src/target/release/oracle /usr/local/bin/oracle
USER oracle
WORKDIR /var/lib/oracle
# Keys live in /keys: mount a volume there so a node keeps its identity across restarts.
ENV ORACLE_KEY_DIR=/keys
ENTRYPOINT ["oracle"]
CMD ["--help"]
