# The stash image: the operator and the agent it injects and runs in Jobs, plus restic.
#   make image            (docker build -t stash:<version> .)
# Stage 1 builds restic from the Go module at the version the tests pin
# (tests/tools/build.sh; a unit test keeps the two equal). Stage 2 builds the wheel,
# stage 3 installs it without the test/dev extras into a slim Python image that runs as
# the non-root user 65532 (the chart's securityContext, Pod Security `restricted`).
ARG GO_VERSION=1.26.8
ARG PYTHON_VERSION=3.11

FROM golang:${GO_VERSION}-bookworm AS restic
ARG RESTIC_VERSION=v0.19.1
RUN CGO_ENABLED=0 GOBIN=/out go install -trimpath -ldflags "-s -w" \
      "github.com/restic/restic/cmd/restic@${RESTIC_VERSION}"

# The Redis and MongoDB addons' Go tools, from the modules the tests pin and build
# (tests/tools/build-databases.sh): redis-dump-go, mongodump, mongorestore.
FROM golang:${GO_VERSION}-bookworm AS dbtools
WORKDIR /src
COPY tests/tools/redis-dump-go ./redis-dump-go
COPY tests/tools/mongo-tools ./mongo-tools
RUN cd redis-dump-go && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
      -o /out/redis-dump-go github.com/yannh/redis-dump-go \
    && cd ../mongo-tools && for t in mongodump mongorestore; do \
      CGO_ENABLED=0 GONOSUMDB=github.com/mongodb/mongo-tools go build -trimpath \
        -ldflags "-s -w" -o /out/$t github.com/mongodb/mongo-tools/$t/main || exit 1; done

# The Elasticsearch/OpenSearch addon's elasticdump, from the lock file the tests pin
# (tests/tools/build-elasticsearch.sh); pure JavaScript, run by Debian's nodejs below.
FROM node:20-bookworm-slim AS elasticdump
WORKDIR /opt/elasticdump
COPY tests/tools/elasticdump/package.json tests/tools/elasticdump/package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts --omit=dev

FROM python:${PYTHON_VERSION}-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim-bookworm
COPY --from=wheel /wheels /tmp/wheels
COPY constraints.txt /tmp/constraints.txt
RUN python -m venv /opt/stash \
    && /opt/stash/bin/pip install --no-cache-dir --disable-pip-version-check \
         -c /tmp/constraints.txt /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels /tmp/constraints.txt
COPY --from=restic /out/restic /usr/local/bin/restic
COPY --from=dbtools /out/ /usr/local/bin/
COPY --from=elasticdump /opt/elasticdump /opt/elasticdump
# The database addons' client tools (docs/databases.md): pg_dump/pg_dumpall/pg_restore/psql,
# mariadb-dump/mariadb (mysqldump/mysql are links to them), redis-cli, and Node for
# elasticdump.
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client-15 mariadb-client \
         redis-tools nodejs \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /opt/elasticdump/node_modules/elasticdump/bin/elasticdump /usr/local/bin/elasticdump
ENV PATH=/opt/stash/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
ENTRYPOINT ["stash"]
CMD ["--help"]
